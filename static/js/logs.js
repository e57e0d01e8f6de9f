/* ale: the Log view. One websocket per choice of pod, container, tail and previous; a bounded
 * buffer of lines drawn as a virtual list (only the rows on screen exist in the DOM); search,
 * pause, timestamps; reconnects with backoff after a blip and resumes after its last line.
 *
 * Protocol: see services/consumers.py. Every "lines" frame is acknowledged once its lines are
 * in the buffer, which is what lets the server send more (its flow control). A "marker" is a
 * line of the viewer's own (the view moved on to a redeploy's new pod, a container restarted);
 * "pods" refreshes the pod list.
 */
(function () {
  "use strict";

  var root = document.querySelector("[data-logs]");
  if (!root || !window.AleAnsi) return;

  var MAX_LINES = 50000;
  var TRIM_SLACK = 2000; // trim in batches: splicing a 50k array for every frame is wasteful
  var ROW_HEIGHT = 19;
  // Closes that reconnecting would not mend, with what the page says (Daphne does not pass a
  // close's reason on; the server's status message before it says the same).
  var CLOSE_REASONS = {
    4413: "A message from the page was over 4 KiB; the connection was closed.",
    4500: "Something went wrong on the server; the connection was closed."
  };

  var $ = function (sel) { return root.querySelector(sel); };
  var view = $("[data-role=view]");
  var spacer = $("[data-role=spacer]");
  var rowsBox = $("[data-role=rows]");
  var statusLine = $("[data-role=status]");
  var droppedLine = $("[data-role=dropped]");
  var offer = $("[data-role=restart-offer]");
  var podSelect = $("[name=pod]");
  var containerSelect = $("[name=container]");
  var tailInput = $("[name=tail]");
  var previousBox = $("[name=previous]");
  var timestampsBox = $("[name=timestamps]");
  var pauseButton = $("[data-action=pause]");
  var searchInput = $("[name=search]");
  var matchesLabel = $("[data-role=matches]");
  var download = $("[data-role=download]");

  var lines = [];      // {pod, ts, text, plain}
  var dropped = 0;     // lines removed from the front of the buffer
  var paused = false;
  var unseen = 0;
  var follow = true;   // stick to the bottom while the user has not scrolled up
  var allPods = false;
  var lastTs = "";
  var socket = null;
  var attempt = 0;
  var retryTimer = null;
  var watchdog = null;
  var keepalive = 25;
  var reconnecting = false;
  var search = { query: "", hits: [], current: -1 };
  var renderQueued = false;

  function setStatus(text, kind) {
    statusLine.textContent = text;
    statusLine.dataset.kind = kind || "";
  }

  function options() {
    var tail = tailInput.value.trim();
    return {
      pod: podSelect.value,
      container: containerSelect.value,
      tail: tail === "" ? "500" : tail,
      previous: previousBox.checked ? "1" : "",
      timestamps: timestampsBox.checked ? "1" : ""
    };
  }

  function query(extra) {
    var params = new URLSearchParams();
    var opts = options();
    Object.keys(opts).forEach(function (k) { if (opts[k] !== "") params.set(k, opts[k]); });
    Object.keys(extra || {}).forEach(function (k) { if (extra[k]) params.set(k, extra[k]); });
    // A build's log: the server maps the number to that build's pod.
    if (root.dataset.build) params.set("build", root.dataset.build);
    return params.toString();
  }

  function updateDownload() {
    download.href = root.dataset.downloadUrl + "?" + query();
  }

  // --- the socket

  function connect(resume) {
    clearTimeout(retryTimer);
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + root.dataset.wsPath +
      "?" + query(resume && lastTs ? { since: lastTs } : null);
    var ws = new WebSocket(url);
    socket = ws;
    ws.onmessage = function (event) {
      if (ws !== socket) return;
      armWatchdog();
      var msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      handle(msg, ws);
    };
    ws.onclose = function (event) {
      if (ws !== socket) return;
      clearTimeout(watchdog);
      if (event.code === 4404) {
        setStatus("That pod is gone. Pick another one.", "error");
        podSelect.value = "";
        return;
      }
      if (CLOSE_REASONS[event.code]) {
        setStatus(event.reason || CLOSE_REASONS[event.code], "error");
        return;
      }
      // Anything else is a blip (network, server restart): try again, less and less often.
      reconnecting = true;
      var delay = Math.min(15000, 500 * Math.pow(2, attempt)) * (0.75 + Math.random() / 2);
      attempt += 1;
      setStatus("Reconnecting… (the connection was lost)", "warning");
      retryTimer = setTimeout(function () { connect(true); }, delay);
    };
  }

  function armWatchdog() {
    clearTimeout(watchdog);
    // Pings come every `keepalive` seconds: silence well past that is a dead connection.
    watchdog = setTimeout(function () { if (socket) socket.close(); }, keepalive * 2500);
  }

  function restart() {
    // New options: a fresh buffer and a fresh socket.
    var old = socket;
    socket = null;
    if (old) old.close();
    lines = [];
    dropped = 0;
    lastTs = "";
    attempt = 0;
    reconnecting = false;
    droppedLine.hidden = true;
    resetSearch();
    updateDownload();
    setStatus("Connecting…");
    schedule();
    connect(false);
  }

  function handle(msg, ws) {
    if (msg.t === "lines" && Array.isArray(msg.lines)) {
      append(msg.pod, msg.lines);
      ws.send(JSON.stringify({ t: "ack", seq: msg.seq }));
    } else if (msg.t === "hello") {
      keepalive = msg.keepalive || keepalive;
      allPods = msg.pod === "*";
      fillPods(msg.pods || [], msg.pod, msg.container);
      if (reconnecting) {
        setStatus("Reconnected.", "ok");
        setTimeout(function () { if (statusLine.dataset.kind === "ok") setStatus("Streaming.", ""); }, 3000);
      } else {
        setStatus(msg.previous ? "Previous container's logs." : "Streaming.", "");
      }
      attempt = 0;
      reconnecting = false;
    } else if (msg.t === "status") {
      var who = msg.pod ? (allPods ? short(msg.pod) + ": " : "") : "";
      if (msg.state === "reconnecting") setStatus(who + (msg.message || "Reconnecting…"), "warning");
      else if (msg.state === "error") setStatus(who + msg.message, "error");
      else if (msg.state === "ended") setStatus(who + (previousBox.checked ? "End of the previous container's log." : "The log ended."), "");
      else if (msg.state === "waiting") setStatus(msg.message, "warning");
      else if (msg.state === "streaming") setStatus(who + (msg.message || "Streaming."), "ok");
    } else if (msg.t === "marker" && typeof msg.text === "string") {
      // A redeploy replaced the pod, or the container restarted: a line of the viewer's own
      // between the two logs, then the new one's lines.
      mark(msg.pod, msg.text);
      if (msg.kind === "pod") setStatus("Streaming from " + msg.pod + ".", "ok");
    } else if (msg.t === "pods" && Array.isArray(msg.pods)) {
      fillPods(msg.pods, msg.pod, msg.container);
    } else if (msg.t === "ping") {
      ws.send('{"t":"pong"}');
    }
  }

  function short(pod) {
    var i = pod.lastIndexOf("-");
    return i >= 0 ? pod.slice(i + 1) : pod;
  }

  function option(value, label) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    return o;
  }

  function fillPods(pods, chosen, container) {
    podSelect.replaceChildren(option("", "Newest running pod"), option("*", "All pods (" + pods.length + ")"));
    var containers = [];
    var restarts = 0;
    pods.forEach(function (pod) {
      podSelect.appendChild(option(pod.name, pod.name + (pod.phase !== "Running" ? " (" + pod.phase + ")" : "")));
      if (chosen === "*" || pod.name === chosen) {
        (pod.containers || []).forEach(function (c) { if (containers.indexOf(c) < 0) containers.push(c); });
        restarts = Math.max(restarts, (pod.restarts || {})[container] || 0);
      }
    });
    podSelect.value = chosen === "*" ? "*" : (podSelect.dataset.explicit ? chosen : "");
    containerSelect.replaceChildren();
    containers.forEach(function (c) { containerSelect.appendChild(option(c, c)); });
    containerSelect.value = container;
    offer.hidden = !(restarts > 0 && !previousBox.checked);
    if (!offer.hidden) offer.querySelector("[data-role=restarts]").textContent = String(restarts);
    updateDownload();
  }

  // --- the buffer

  function append(pod, batch) {
    var lower = search.query;
    for (var i = 0; i < batch.length; i++) {
      // "<timestamp> <text>": Kubernetes' RFC 3339 prefix, always asked for by the server.
      var raw = String(batch[i]);
      var sp = raw.indexOf(" ");
      var stamped = sp >= 20 && raw.charAt(4) === "-" && raw.charAt(10) === "T" && raw.charAt(sp - 1) === "Z";
      var ts = stamped ? raw.slice(0, sp) : "";
      var text = stamped ? raw.slice(sp + 1) : raw;
      var plain = window.AleAnsi.plain(text);
      lines.push({ pod: pod, ts: ts, text: text, plain: plain });
      if (lower && plain.toLowerCase().indexOf(lower) >= 0) search.hits.push(dropped + lines.length - 1);
      if (ts > lastTs) lastTs = ts;
    }
    if (lines.length > MAX_LINES + TRIM_SLACK) {
      var cut = lines.length - MAX_LINES;
      lines.splice(0, cut);
      dropped += cut;
      var firstKept = dropped;
      while (search.hits.length && search.hits[0] < firstKept) { search.hits.shift(); search.current -= 1; }
      if (search.current < 0 && search.hits.length) search.current = 0;
      droppedLine.hidden = false;
      droppedLine.textContent = dropped.toLocaleString() + " older lines were dropped from view (the viewer keeps the last " +
        MAX_LINES.toLocaleString() + "). Download the log to get them all.";
      if (!follow) view.scrollTop = Math.max(0, view.scrollTop - cut * ROW_HEIGHT);
    }
    if (paused) {
      unseen += batch.length;
      pauseButton.textContent = "Resume (" + unseen.toLocaleString() + " new)";
    }
    updateMatches();
    schedule();
  }

  function mark(pod, text) {
    lines.push({ pod: pod || "", ts: "", text: text, plain: text, marker: true });
    if (paused) {
      unseen += 1;
      pauseButton.textContent = "Resume (" + unseen.toLocaleString() + " new)";
    }
    schedule();
  }

  // --- drawing

  function schedule() {
    if (renderQueued || paused) return;
    renderQueued = true;
    requestAnimationFrame(draw);
  }

  function draw() {
    renderQueued = false;
    if (paused) return;
    var height = lines.length * ROW_HEIGHT;
    spacer.style.height = height + "px";
    // Following: the window comes from the line count. After a trim, scrollHeight still counts
    // the old rows' box (translated past the shorter spacer), and a window read back from it
    // would start after the last line: a frame with no rows.
    var top = follow ? Math.max(0, height - view.clientHeight) : view.scrollTop;
    if (follow) view.scrollTop = top;
    var first = Math.max(0, Math.floor(top / ROW_HEIGHT) - 5);
    var count = Math.ceil(view.clientHeight / ROW_HEIGHT) + 10;
    var last = Math.min(lines.length, first + count);
    var showTs = timestampsBox.checked;
    var needle = search.query;
    var currentLine = search.current >= 0 ? search.hits[search.current] - dropped : -1;
    rowsBox.style.transform = "translateY(" + (first * ROW_HEIGHT) + "px)";
    var frag = document.createDocumentFragment();
    for (var i = first; i < last; i++) {
      var line = lines[i];
      var row = document.createElement("div");
      row.className = "log-row";
      if (line.marker) {
        row.className = "log-row log-marker";
        row.setAttribute("data-role", "marker");
        row.textContent = line.text;
        frag.appendChild(row);
        continue;
      }
      if (allPods) {
        var label = document.createElement("span");
        label.className = "log-pod";
        label.textContent = short(line.pod);
        label.title = line.pod;
        row.appendChild(label);
      }
      if (showTs && line.ts) {
        var ts = document.createElement("span");
        ts.className = "log-ts";
        ts.textContent = line.ts;
        row.appendChild(ts);
      }
      var body = document.createElement("span");
      body.className = "log-text";
      var marks = [];
      if (needle) {
        var hay = line.plain.toLowerCase();
        var at = hay.indexOf(needle);
        while (at >= 0 && marks.length < 50) {
          marks.push([at, at + needle.length]);
          at = hay.indexOf(needle, at + needle.length);
        }
      }
      window.AleAnsi.render(body, line.text, marks, i === currentLine ? 0 : -1);
      row.appendChild(body);
      frag.appendChild(row);
    }
    rowsBox.replaceChildren(frag);
  }

  view.addEventListener("scroll", function () {
    follow = view.scrollTop + view.clientHeight >= view.scrollHeight - ROW_HEIGHT * 2;
    schedule();
  }, { passive: true });
  window.addEventListener("resize", schedule);

  // --- search

  function resetSearch() {
    search.hits = [];
    search.current = -1;
    updateMatches();
  }

  function runSearch() {
    search.query = searchInput.value.toLowerCase();
    search.hits = [];
    if (search.query) {
      for (var i = 0; i < lines.length; i++) {
        if (lines[i].plain.toLowerCase().indexOf(search.query) >= 0) search.hits.push(dropped + i);
      }
    }
    search.current = search.hits.length ? search.hits.length - 1 : -1;
    reveal();
  }

  function step(delta) {
    if (!search.hits.length) return;
    search.current = (search.current + delta + search.hits.length) % search.hits.length;
    reveal();
  }

  function reveal() {
    updateMatches();
    if (search.current >= 0) {
      var index = search.hits[search.current] - dropped;
      follow = false;
      view.scrollTop = Math.max(0, index * ROW_HEIGHT - view.clientHeight / 2);
    }
    if (paused) { renderQueued = false; pausedDraw(); } else schedule();
  }

  function pausedDraw() {
    // Searching while paused still moves the view over the lines already received.
    paused = false;
    draw();
    paused = true;
  }

  function updateMatches() {
    matchesLabel.textContent = search.query ? (search.hits.length ? (search.current + 1) + " / " + search.hits.length : "No match") : "";
  }

  var searchTimer = null;
  searchInput.addEventListener("input", function () {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, 120);
  });
  searchInput.addEventListener("keydown", function (event) {
    if (event.key === "Enter") { event.preventDefault(); clearTimeout(searchTimer); if (searchInput.value.toLowerCase() !== search.query) runSearch(); else step(event.shiftKey ? -1 : 1); }
  });
  $("[data-action=next]").addEventListener("click", function () { step(1); });
  $("[data-action=prev]").addEventListener("click", function () { step(-1); });

  // --- controls

  pauseButton.addEventListener("click", function () {
    paused = !paused;
    pauseButton.setAttribute("aria-pressed", paused ? "true" : "false");
    if (paused) {
      unseen = 0;
      pauseButton.textContent = "Resume";
    } else {
      pauseButton.textContent = "Pause";
      follow = true;
      schedule();
    }
  });
  timestampsBox.addEventListener("change", function () { updateDownload(); schedule(); });
  podSelect.addEventListener("change", function () { podSelect.dataset.explicit = "1"; containerSelect.value = ""; restart(); });
  containerSelect.addEventListener("change", restart);
  previousBox.addEventListener("change", restart);
  tailInput.addEventListener("change", restart);
  offer.querySelector("button").addEventListener("click", function () { previousBox.checked = true; restart(); });
  root.querySelector("form").addEventListener("submit", function (event) { event.preventDefault(); restart(); });
  window.addEventListener("beforeunload", function () { var ws = socket; socket = null; if (ws) ws.close(); });

  restart();
})();
