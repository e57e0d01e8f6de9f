// The environment page's cards and the deploy modal.
//
// Cards reach the page two ways: the response to a button (htmx) and the live socket (the
// watcher). Either may arrive first, so a card never replaces a newer one (data-changed is
// when its status last changed), a card for a service the page does not show yet is added to
// the grid once every page of cards has loaded, and the page keeps one card per service.
(function () {
  "use strict";

  function changedAt(card) {
    return parseFloat(card.getAttribute("data-changed")) || 0;
  }

  function isVersionedCard(element) {
    return element && element.classList && element.classList.contains("service-card") && element.hasAttribute("data-changed");
  }

  function firstCard(html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    return template.content.querySelector(".service-card");
  }

  // --- the deploy and delete modals (a <dialog> loaded into #modal-root)

  function closeModal() {
    var dialog = document.getElementById("modal");
    if (dialog && dialog.open) dialog.close();
  }

  function applyKind(form) {
    var kind = form.querySelector("select[name=kind]");
    if (!kind) return;
    form.querySelectorAll("[data-kind-only]").forEach(function (field) {
      // A field with an error stays visible: its message must be read.
      field.hidden = field.getAttribute("data-kind-only") !== kind.value && !field.querySelector(".has-error");
    });
  }

  function applySource(form) {
    var chosen = form.querySelector("input[name=source]:checked");
    if (!chosen) return;
    form.querySelectorAll("[data-source-only]").forEach(function (group) {
      group.hidden = group.getAttribute("data-source-only") !== chosen.value && !group.querySelector(".has-error");
    });
  }

  // "Building · 1:05": the elapsed time of a build, from when the card says it started.
  function tickBuilds() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-building-since]").forEach(function (element) {
      var seconds = Math.max(0, Math.floor(now - parseFloat(element.getAttribute("data-building-since"))));
      var minutes = Math.floor(seconds / 60);
      var rest = seconds % 60;
      element.textContent = minutes + ":" + (rest < 10 ? "0" : "") + rest;
    });
  }
  setInterval(tickBuilds, 1000);

  htmx.onLoad(function (root) {
    if (!root.querySelectorAll) return;
    var dialogs = root.matches("dialog[data-modal]") ? [root] : root.querySelectorAll("dialog[data-modal]");
    dialogs.forEach(function (dialog) {
      dialog.querySelectorAll("form").forEach(applyKind);
      dialog.querySelectorAll("form").forEach(applySource);
      if (!dialog.open) dialog.showModal();
      var invalid = dialog.querySelector(".has-error input, .has-error select, .has-error textarea");
      if (invalid) invalid.focus();
    });
    // One card per service: keep the newest when the socket and a response both added it.
    var cards = root.matches(".service-card") ? [root] : root.querySelectorAll(".service-card");
    cards.forEach(function (card) {
      var same = document.querySelectorAll("#" + CSS.escape(card.id));
      if (same.length < 2) return;
      var newest = card;
      same.forEach(function (other) { if (changedAt(other) > changedAt(newest)) newest = other; });
      same.forEach(function (other) { if (other !== newest) other.remove(); });
    });
  });

  document.addEventListener("change", function (event) {
    if (event.target.name === "kind" && event.target.form) applyKind(event.target.form);
    if (event.target.name === "source" && event.target.form) applySource(event.target.form);
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-modal-cancel]")) closeModal();
  });

  // A closed dialog leaves the page, so that the next one opens fresh.
  document.addEventListener("close", function (event) {
    if (event.target.matches && event.target.matches("dialog[data-modal]")) event.target.remove();
  }, true);

  document.body.addEventListener("ale:modal-close", closeModal);

  // --- cards from the live socket

  // A card whose button has a request out (htmx marks the form .htmx-request) is not replaced
  // under it: the answer would land in the detached card, and htmx would look for the answer's
  // out-of-band parts (the flash message) inside that card and miss them. The socket's card
  // waits for the answer, then goes in if it is still newer than what the page shows.
  function swapWhenIdle(card) {
    var current = document.getElementById(card.id);
    if (!current) return;
    if (current.querySelector(".htmx-request")) {
      setTimeout(function () { swapWhenIdle(card); }, 100);
    } else if (changedAt(card) > changedAt(current)) {
      htmx.swap(current, card.outerHTML, { swapStyle: "outerHTML" });
    }
  }

  document.body.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target;
    var fragment = event.detail.fragment;
    var incoming = fragment && (fragment.firstElementChild || fragment);
    if (!isVersionedCard(target) || !isVersionedCard(incoming)) return;
    if (changedAt(incoming) < changedAt(target)) {
      event.detail.shouldSwap = false;
    } else if (target.querySelector(".htmx-request")) {
      event.detail.shouldSwap = false;
      var waiting = incoming.cloneNode(true);
      setTimeout(function () { swapWhenIdle(waiting); }, 100);
    }
  });

  // Out-of-band parts for what the page does not show (`hx-ext="page-targets"` on the
  // environment page, for its socket and its requests): the socket serves every tab, and Start
  // All answers with every card. htmx logs each part with no target as an error; they are
  // dropped here instead, except a card for a service the page does not show yet (deployed
  // from another tab or by another member), which joins the grid; one being deleted does not
  // come back. While further pages of cards are still to load it may belong to one of them:
  // appended now it would sit out of order, so it is left to come with its page.
  function oobTarget(element, value) {
    var colon = value ? value.indexOf(":") : -1;
    if (colon > 0) return value.substring(colon + 1);
    return element.id ? "#" + CSS.escape(element.id) : null;
  }

  function joinsTheGrid(element) {
    return isVersionedCard(element) && element.getAttribute("data-status") !== "deleting" &&
      document.getElementById("service-grid") && !document.querySelector("[data-more-services]");
  }

  htmx.defineExtension("page-targets", {
    transformResponse: function (text, xhr) {
      if (text.indexOf("id=") < 0) return text;
      var template = document.createElement("template");
      template.innerHTML = text;
      var changed = false;
      Array.prototype.slice.call(template.content.children).forEach(function (element) {
        var value = element.getAttribute("hx-swap-oob");
        // An answer's own content is not out of band; every part of a socket message is.
        if (xhr && value === null) return;
        var selector = oobTarget(element, value);
        if (!selector || document.querySelector(selector)) return;
        changed = true;
        if (joinsTheGrid(element)) {
          var wrapper = document.createElement("div");
          wrapper.setAttribute("hx-swap-oob", "beforeend:#service-grid");
          element.removeAttribute("hx-swap-oob");
          element.replaceWith(wrapper);
          wrapper.appendChild(element);
        } else {
          element.remove();
        }
      });
      return changed ? template.innerHTML : text;
    }
  });

  // --- the live socket's messages, applied here in one go
  //
  // A message holds everything the server coalesced over a short window (see
  // environments/consumers.py): up to every card of the environment at once. htmx's
  // out-of-band swap costs a settle and a round of events per element, which for 300 cards is a
  // long task that freezes the page; the message is taken over here instead, parsed once and
  // applied in the same task. htmx.process, which gives a card's buttons their requests, costs
  // milliseconds per card: the cards are swapped at once and processed a few at a time after,
  // and a card someone reaches for (pointer, focus, key) first is processed on the spot.

  var unprocessed = [];
  var processing = null;

  function processLater(card) {
    card.aleUnprocessed = true;
    unprocessed.push(card);
    if (processing === null) processing = setTimeout(processSome, 0);
  }

  function processNow(card) {
    if (!card.aleUnprocessed) return;
    card.aleUnprocessed = false;
    if (card.isConnected) htmx.process(card);
  }

  function processSome() {
    processing = null;
    var until = performance.now() + 25;
    while (unprocessed.length && performance.now() < until) processNow(unprocessed.shift());
    if (unprocessed.length) processing = setTimeout(processSome, 0);
  }

  ["pointerdown", "focusin", "keydown"].forEach(function (type) {
    document.addEventListener(type, function (event) {
      var card = event.target.closest && event.target.closest(".service-card");
      if (card) processNow(card);
    }, true);
  });

  function seenAt(row) {
    return parseFloat(row.getAttribute("data-seen")) || 0;
  }

  function rowNumber(row) {
    return parseInt(row.id.substring(row.id.indexOf("-") + 1), 10) || 0;
  }

  // Newest first, as the Events tab lists them (ClusterEvent.objects.recent).
  function listedBefore(row, other) {
    return seenAt(row) > seenAt(other) || (seenAt(row) === seenAt(other) && rowNumber(row) > rowNumber(other));
  }

  function applyEventRows(rows) {
    var list = document.getElementById("event-list");
    var table = list && list.querySelector("table.event-list");
    if (!table) return;
    var body = table.tBodies[0];
    rows.forEach(function (row) {
      var shown = document.getElementById(row.id);
      if (shown) shown.remove();
      var next = body.firstElementChild;
      while (next && listedBefore(next, row)) next = next.nextElementSibling;
      body.insertBefore(row, next);
    });
    var cap = parseInt(table.getAttribute("data-cap"), 10) || 200;
    while (body.rows.length > cap) body.lastElementChild.remove();
    table.hidden = body.rows.length === 0;
    var empty = list.querySelector(".empty");
    if (empty) empty.hidden = !table.hidden;
  }

  function applyCard(card) {
    var current = document.getElementById(card.id);
    if (!current) {
      if (joinsTheGrid(card)) {
        document.getElementById("service-grid").appendChild(card);
        processLater(card);
      }
    } else if (changedAt(card) < changedAt(current)) {
      return;  // a button's answer already brought a newer state
    } else if (current.querySelector(".htmx-request")) {
      setTimeout(function () { swapWhenIdle(card); }, 100);
    } else {
      current.replaceWith(card);
      processLater(card);
    }
  }

  function applyElement(element) {
    var current = document.getElementById(element.id);
    if (!current) return;  // for a tab this page does not show
    var style = element.getAttribute("hx-swap-oob");
    element.removeAttribute("hx-swap-oob");
    if (style === "delete") {
      offscreen.delete(element.id);  // a card still waiting would bring it back
      current.remove();
    } else {
      htmx.swap(current, element.outerHTML, { swapStyle: !style || style === "true" ? "outerHTML" : style });
    }
  }

  // Cards in view are swapped in the message's own task; the others follow a slice per frame
  // (what a frame lays out grows with the cards swapped before it), so that neither a task nor
  // a frame holds the page for long even when every card of a big environment changes at once.
  // (A tab in the background draws no frames: its queue holds one card per service, the newest.)
  var CARDS_PER_FRAME = 25;
  var offscreen = new Map();
  var swapping = null;

  function swapLater(card) {
    var queued = offscreen.get(card.id);
    if (queued && changedAt(queued) > changedAt(card)) return;
    offscreen.delete(card.id);
    offscreen.set(card.id, card);
  }

  function inView(card) {
    var current = document.getElementById(card.id);
    if (!current) return true;
    var box = current.getBoundingClientRect();
    return box.bottom >= 0 && box.top <= window.innerHeight;
  }

  function swapSome() {
    swapping = null;
    var slice = Array.from(offscreen.values()).slice(0, CARDS_PER_FRAME);
    slice.forEach(function (card) {
      offscreen.delete(card.id);
      applyCard(card);
    });
    if (offscreen.size) swapping = requestAnimationFrame(swapSome);
  }

  function applyMessage(html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    var rows = [];
    Array.prototype.slice.call(template.content.children).forEach(function (element) {
      if (element.matches("template[data-event-row]")) {
        if (element.content.firstElementChild) rows.push(element.content.firstElementChild);
      } else if (isVersionedCard(element)) {
        if (inView(element)) {
          applyCard(element);
        } else {
          swapLater(element);
        }
      } else if (element.id) {
        applyElement(element);
      }
    });
    if (rows.length) applyEventRows(rows);
    if (offscreen.size && swapping === null) swapping = requestAnimationFrame(swapSome);
  }

  document.body.addEventListener("htmx:wsBeforeMessage", function (event) {
    event.preventDefault();
    applyMessage(event.detail.message);
    // What htmx announces after a message it applied, for whoever listens.
    htmx.trigger(event.target, "htmx:wsAfterMessage", event.detail);
  });

  // The socket is told which tab the page shows when it opens (again, after a drop) and when
  // the tab changes, and then sends only what that tab shows (environments/consumers.py).
  var liveSocket = null;

  function sayTab() {
    var tabs = document.querySelector("nav.tabs[data-tab]");
    if (liveSocket && tabs) liveSocket.send(JSON.stringify({ tab: tabs.getAttribute("data-tab") }));
  }

  document.body.addEventListener("htmx:wsOpen", function (event) {
    liveSocket = event.detail.socketWrapper;
    sayTab();
  });

  document.body.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.target && event.detail.target.id === "env-body") sayTab();
  });

  // --- cards from a button's response

  document.body.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    if (!detail.shouldSwap || typeof detail.serverResponse !== "string") return;
    var incoming = firstCard(detail.serverResponse);
    if (!isVersionedCard(incoming)) return;
    var current = document.getElementById(incoming.id);
    if (!current) return;
    if (changedAt(incoming) < changedAt(current)) {
      detail.shouldSwap = false;  // the socket already brought a newer state
    } else if (current !== detail.target) {
      current.remove();  // appended by the socket first: the response's copy replaces it
    }
  });
})();
