// Search on a site opened from disk (file://). Browsers refuse to start a Web Worker from a
// file:// page, and Material for MkDocs runs its search index in one. Opened from disk, this
// replaces Worker with a hidden same-origin iframe that runs the worker's script and passes
// messages both ways; served over http(s) it does nothing. (The offline plugin would load a
// shim of this kind from a CDN; the docs must not touch the network. Its name must contain
// "iframe-worker" so the plugin leaves it in place of its own.)
(function () {
  "use strict";
  if (location.protocol !== "file:") return;

  function FrameWorker(url) {
    var worker = this;
    this.onmessage = null;
    this._listeners = [];
    this._pending = [];
    this._ready = false;
    this._frame = document.createElement("iframe");
    this._frame.hidden = true;
    (document.body || document.documentElement).appendChild(this._frame);
    var win = this._frame.contentWindow;
    // The worker's own postMessage(data) reaches the page's listeners.
    win.postMessage = function (data) {
      setTimeout(function () { worker._emit(data); }, 0);
    };
    var script = win.document.createElement("script");
    script.src = String(url);
    script.onload = function () {
      worker._ready = true;
      worker._pending.splice(0).forEach(function (data) { worker._deliver(data); });
    };
    script.onerror = function () {
      var error = new ErrorEvent("error", { message: "could not load " + url });
      if (worker.onerror) worker.onerror(error);
    };
    win.document.head.appendChild(script);
  }

  FrameWorker.prototype._emit = function (data) {
    var event = new MessageEvent("message", { data: data });
    if (typeof this.onmessage === "function") this.onmessage(event);
    this._listeners.forEach(function (listener) { listener(event); });
  };

  FrameWorker.prototype._deliver = function (data) {
    var win = this._frame.contentWindow;
    var event = new win.MessageEvent("message", { data: data });
    if (typeof win.onmessage === "function") win.onmessage(event);
    win.dispatchEvent(event);
  };

  FrameWorker.prototype.postMessage = function (data) {
    var worker = this;
    if (!this._ready) { this._pending.push(data); return; }
    setTimeout(function () { worker._deliver(data); }, 0);
  };

  FrameWorker.prototype.addEventListener = function (type, listener) {
    if (type === "message") this._listeners.push(listener);
  };

  FrameWorker.prototype.removeEventListener = function (type, listener) {
    this._listeners = this._listeners.filter(function (l) { return l !== listener; });
  };

  FrameWorker.prototype.terminate = function () {
    this._frame.remove();
  };

  window.Worker = FrameWorker;
})();
