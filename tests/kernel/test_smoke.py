def test_fresh_kernel_passes_the_guard_and_spawn_output_lands_in_its_cell(kernel):
    cell = kernel.execute("%%spawn\nprint('hello from the child')")
    assert "hello from the child" in cell.text("stdout")
    assert "exited 0" in cell.text("stdout")
