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

  document.body.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target;
    var fragment = event.detail.fragment;
    var incoming = fragment && (fragment.firstElementChild || fragment);
    if (isVersionedCard(target) && isVersionedCard(incoming) && changedAt(incoming) < changedAt(target)) {
      event.detail.shouldSwap = false;
    }
  });

  // A card whose service the page does not show yet: a service deployed from another tab or by
  // another member. It joins the grid (one being deleted does not come back). While further
  // pages of cards are still to load, it may belong to one of them: appended now it would sit
  // out of order, so it is left to come with its page, rendered then from the current state.
  document.body.addEventListener("htmx:oobErrorNoTarget", function (event) {
    var card = event.detail.content;
    var grid = document.getElementById("service-grid");
    if (!grid || !isVersionedCard(card) || card.getAttribute("data-status") === "deleting") return;
    if (document.querySelector("[data-more-services]")) return;
    grid.appendChild(card);
    htmx.process(card);
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
