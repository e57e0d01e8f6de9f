/* ale: SGR colours of a log line to styled DOM text.
 *
 * The server has already removed every escape sequence but SGR (`ESC [ … m`); this turns
 * those into spans with classes from a fixed palette (or an rgb() built from numbers only).
 * Text is only ever set with textContent: a line can never become markup.
 */
(function () {
  "use strict";

  var SGR = /\x1b\[([0-9;:]*)m/g;

  function clamp(n) {
    n = parseInt(n, 10);
    return isNaN(n) ? 0 : Math.max(0, Math.min(255, n));
  }

  // 256-colour index → css colour (xterm's cube and grey ramp).
  function indexed(n) {
    n = clamp(n);
    if (n < 16) return null;
    if (n >= 232) {
      var g = 8 + (n - 232) * 10;
      return "rgb(" + g + "," + g + "," + g + ")";
    }
    n -= 16;
    var steps = [0, 95, 135, 175, 215, 255];
    return "rgb(" + steps[Math.floor(n / 36)] + "," + steps[Math.floor(n / 6) % 6] + "," + steps[n % 6] + ")";
  }

  function apply(state, params) {
    var codes = params === "" ? [0] : params.split(/[;:]/).map(function (p) { return p === "" ? 0 : parseInt(p, 10); });
    for (var i = 0; i < codes.length; i++) {
      var c = codes[i];
      if (c === 0) { state.fg = state.bg = null; state.bold = state.dim = state.italic = state.underline = state.inverse = false; }
      else if (c === 1) state.bold = true;
      else if (c === 2) state.dim = true;
      else if (c === 3) state.italic = true;
      else if (c === 4) state.underline = true;
      else if (c === 7) state.inverse = true;
      else if (c === 22) state.bold = state.dim = false;
      else if (c === 23) state.italic = false;
      else if (c === 24) state.underline = false;
      else if (c === 27) state.inverse = false;
      else if (c >= 30 && c <= 37) state.fg = "c" + (c - 30);
      else if (c >= 90 && c <= 97) state.fg = "c" + (c - 90 + 8);
      else if (c === 39) state.fg = null;
      else if (c >= 40 && c <= 47) state.bg = "c" + (c - 40);
      else if (c >= 100 && c <= 107) state.bg = "c" + (c - 100 + 8);
      else if (c === 49) state.bg = null;
      else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
        var n = clamp(codes[i + 2]);
        var colour = n < 16 ? "c" + n : indexed(n);
        if (c === 38) state.fg = colour; else state.bg = colour;
        i += 2;
      } else if ((c === 38 || c === 48) && codes[i + 1] === 2) {
        var rgb = "rgb(" + clamp(codes[i + 2]) + "," + clamp(codes[i + 3]) + "," + clamp(codes[i + 4]) + ")";
        if (c === 38) state.fg = rgb; else state.bg = rgb;
        i += 4;
      }
    }
  }

  /* [{text, style}] for a line; style is null for plain text. */
  function segments(line) {
    var out = [];
    var state = { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false };
    var last = 0;
    var match;
    SGR.lastIndex = 0;
    while ((match = SGR.exec(line)) !== null) {
      if (match.index > last) out.push({ text: line.slice(last, match.index), style: snapshot(state) });
      apply(state, match[1]);
      last = SGR.lastIndex;
    }
    if (last < line.length) out.push({ text: line.slice(last), style: snapshot(state) });
    return out;
  }

  function snapshot(s) {
    if (!s.fg && !s.bg && !s.bold && !s.dim && !s.italic && !s.underline && !s.inverse) return null;
    return { fg: s.inverse ? s.bg || "inv-fg" : s.fg, bg: s.inverse ? s.fg || "inv-bg" : s.bg,
      bold: s.bold, dim: s.dim, italic: s.italic, underline: s.underline };
  }

  function plain(line) {
    return line.replace(SGR, "");
  }

  function styled(text, style) {
    var span = document.createElement("span");
    span.textContent = text;
    if (style) {
      if (style.fg) { if (style.fg.charAt(0) === "r") span.style.color = style.fg; else span.classList.add("ansi-fg-" + style.fg); }
      if (style.bg) { if (style.bg.charAt(0) === "r") span.style.backgroundColor = style.bg; else span.classList.add("ansi-bg-" + style.bg); }
      if (style.bold) span.classList.add("ansi-bold");
      if (style.dim) span.classList.add("ansi-dim");
      if (style.italic) span.classList.add("ansi-italic");
      if (style.underline) span.classList.add("ansi-underline");
    }
    return span;
  }

  /* Append `line` to `parent` as styled spans; the ranges [start, end) of the plain text in
   * `marks` are wrapped in <mark> (search hits), `current` being the one in focus. */
  function render(parent, line, marks, current) {
    var pos = 0;
    var segs = segments(line);
    marks = marks || [];
    for (var s = 0; s < segs.length; s++) {
      var seg = segs[s];
      var start = pos;
      var end = pos + seg.text.length;
      var cut = start;
      for (var m = 0; m < marks.length; m++) {
        var a = Math.max(marks[m][0], start);
        var b = Math.min(marks[m][1], end);
        if (a >= b) continue;
        if (a > cut) parent.appendChild(styled(seg.text.slice(cut - start, a - start), seg.style));
        var mark = document.createElement("mark");
        if (m === current) mark.className = "is-current";
        mark.appendChild(styled(seg.text.slice(a - start, b - start), seg.style));
        parent.appendChild(mark);
        cut = b;
      }
      if (cut < end) parent.appendChild(styled(seg.text.slice(cut - start), seg.style));
      pos = end;
    }
  }

  window.AleAnsi = { segments: segments, plain: plain, render: render };
})();
