/* ale: the Terminal. xterm.js on a websocket to a shell in the chosen container.
 *
 * Output arrives as binary frames and is acknowledged once xterm.js has processed it (its
 * write callback), every ACK_BYTES: the server stops reading the shell past its high watermark,
 * so a flood (`cat` of a big file, `yes`) never freezes the tab. The window's size follows the
 * page (fit addon → resize frames). Keystrokes go as {"t":"in"} frames.
 */
(function () {
  "use strict";

  var root = document.querySelector("[data-terminal]");
  if (!root || !window.Terminal || !window.FitAddon) return;

  var ACK_BYTES = 5000;
  // Why the server closed, by close code: Daphne does not pass a close's reason on, and the
  // message the server sends before closing may not have arrived.
  var CLOSE_REASONS = {
    4413: "The input was over 256 KiB at once; the terminal was closed.",
    4500: "Something went wrong on the server; the connection was closed."
  };
  var $ = function (sel) { return root.querySelector(sel); };
  var host = $("[data-role=host]");
  var statusLine = $("[data-role=status]");
  var where = $("[data-role=where]");
  var podSelect = $("[name=pod]");
  var containerSelect = $("[name=container]");
  var reconnectButton = $("[data-action=reconnect]");

  var term = new window.Terminal({
    cursorBlink: true,
    convertEol: false,
    fontFamily: getComputedStyle(document.documentElement).getPropertyValue("--mono") || "monospace",
    fontSize: 13,
    scrollback: 5000,
    theme: { background: "#111418", foreground: "#e6e6e6" }
  });
  var fit = new window.FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(host);
  fit.fit();

  var socket = null;
  var written = 0;
  var acked = 0;
  var ended = false;
  var keepalive = 25;
  var watchdog = null;
  var pods = [];

  function setStatus(text, kind) {
    statusLine.textContent = text;
    statusLine.dataset.kind = kind || "";
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function connect() {
    ended = false;
    written = acked = 0;
    reconnectButton.hidden = true;
    var params = new URLSearchParams({ cols: String(term.cols), rows: String(term.rows) });
    if (podSelect.value) params.set("pod", podSelect.value);
    if (containerSelect.value) params.set("container", containerSelect.value);
    var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + root.dataset.wsPath + "?" + params);
    ws.binaryType = "arraybuffer";
    socket = ws;
    setStatus("Connecting…");
    ws.onmessage = function (event) {
      if (ws !== socket) return;
      armWatchdog();
      if (event.data instanceof ArrayBuffer) {
        var data = new Uint8Array(event.data);
        term.write(data, function () {
          written += data.length;
          if (written - acked >= ACK_BYTES) {
            acked = written;
            send({ t: "ack", seq: written });
          }
        });
        return;
      }
      var msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      handle(msg);
    };
    ws.onclose = function (event) {
      if (ws !== socket) return;
      clearTimeout(watchdog);
      socket = null;
      if (!ended) {
        ended = true;
        setStatus(event.reason || CLOSE_REASONS[event.code] ||
          (event.code === 1006 ? "The connection was lost." : "The terminal closed."), "error");
      }
      reconnectButton.hidden = false;
      term.options.disableStdin = true;
    };
  }

  function armWatchdog() {
    clearTimeout(watchdog);
    watchdog = setTimeout(function () { if (socket) socket.close(); }, keepalive * 2500);
  }

  function option(value, label) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    return o;
  }

  function fillPickers(list, pod, container) {
    pods = list;
    podSelect.replaceChildren();
    list.forEach(function (p) { podSelect.appendChild(option(p.name, p.name)); });
    podSelect.value = pod;
    var current = list.filter(function (p) { return p.name === pod; })[0];
    containerSelect.replaceChildren();
    ((current && current.containers) || []).forEach(function (c) { containerSelect.appendChild(option(c, c)); });
    containerSelect.value = container;
  }

  function handle(msg) {
    if (msg.t === "status" && msg.state === "connecting") {
      keepalive = msg.keepalive || keepalive;
      fillPickers(msg.pods || [], msg.pod, msg.container);
      where.textContent = msg.pod + " / " + msg.container;
      setStatus("Opening a shell in " + msg.pod + " / " + msg.container + "…");
    } else if (msg.t === "status" && msg.state === "open") {
      term.options.disableStdin = false;
      setStatus("Connected to " + msg.pod + " / " + msg.container + ".", "ok");
      term.focus();
    } else if (msg.t === "exit") {
      ended = true;
      var code = msg.code === null || msg.code === undefined ? "unknown" : msg.code;
      term.write("\r\n\x1b[2m[The shell exited with status " + code + "]\x1b[0m\r\n");
      setStatus("The shell exited (status " + code + ")." + (msg.message ? " " + msg.message : ""), code === 0 ? "" : "warning");
    } else if (msg.t === "closed") {
      ended = true;
      term.write("\r\n\x1b[2m[" + String(msg.message || "Closed.").replace(/[\x00-\x1f\x7f]/g, "") + "]\x1b[0m\r\n");
      setStatus(msg.message || "Closed.", "warning");
    } else if (msg.t === "error") {
      ended = true;
      setStatus(msg.message || "The terminal failed.", "error");
    } else if (msg.t === "ping") {
      send({ t: "pong" });
    }
  }

  term.onData(function (data) {
    if (!ended) send({ t: "in", d: data });
  });
  term.onResize(function (size) {
    send({ t: "resize", cols: size.cols, rows: size.rows });
  });

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { fit.fit(); }, 50);
  });

  function reopen() {
    var old = socket;
    socket = null;
    if (old) old.close();
    term.reset();
    connect();
  }

  podSelect.addEventListener("change", function () { containerSelect.value = ""; reopen(); });
  containerSelect.addEventListener("change", reopen);
  reconnectButton.addEventListener("click", reopen);
  window.addEventListener("beforeunload", function () { var ws = socket; socket = null; if (ws) ws.close(); });

  connect();
})();
