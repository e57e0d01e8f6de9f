// Keyboard and pointer behaviour for the <details> menus (environment selector, user menu).
// Without this file they still open with a click or Enter and every option is a plain link.
(function () {
  "use strict";

  function options(menu) {
    return Array.prototype.slice.call(menu.querySelectorAll("[data-env-option], .menu-item"))
      .filter(function (el) { return el.offsetParent !== null; });
  }

  function focusOption(menu, index) {
    var items = options(menu);
    if (!items.length) return;
    items[(index + items.length) % items.length].focus();
  }

  function close(menu, restoreFocus) {
    menu.open = false;
    if (restoreFocus) menu.querySelector("summary").focus();
  }

  document.addEventListener("keydown", function (event) {
    var menu = event.target.closest && event.target.closest("details.menu-anchor");
    if (!menu) return;
    var inField = /^(INPUT|SELECT|TEXTAREA)$/.test(event.target.tagName);
    if (event.key === "Escape") {
      if (menu.open) { event.preventDefault(); close(menu, true); }
      return;
    }
    if (inField) return;  // arrows belong to the form field being edited
    var items = options(menu);
    var index = items.indexOf(event.target);
    var onToggle = event.target === menu.querySelector("summary");
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (onToggle && !menu.open) menu.open = true;
      if (onToggle || index === -1) {
        var current = menu.querySelector('[aria-current="page"]');
        var start = current ? options(menu).indexOf(current) : 0;
        focusOption(menu, event.key === "ArrowDown" ? start : start - (current ? 0 : 1));
      } else {
        focusOption(menu, index + (event.key === "ArrowDown" ? 1 : -1));
      }
    } else if (event.key === "Home" && menu.open && index !== -1) {
      event.preventDefault(); focusOption(menu, 0);
    } else if (event.key === "End" && menu.open && index !== -1) {
      event.preventDefault(); focusOption(menu, -1);
    }
  });

  // An action the menu sends without leaving the page (Start All, Stop All) closes it: its
  // answer shows on the page, not in the menu.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail && event.detail.elt;
    if (!form || !form.matches || !form.matches("details.menu-anchor form[hx-swap='none']")) return;
    close(form.closest("details.menu-anchor"), true);
  });

  // A click anywhere else closes an open menu, as users expect from a dropdown.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.menu-anchor[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) close(menu, false);
    });
  });

  // Focus leaving the menu (Tab past its last option) closes it too.
  document.addEventListener("focusout", function (event) {
    var menu = event.target.closest && event.target.closest("details.menu-anchor[open]");
    if (menu && event.relatedTarget && !menu.contains(event.relatedTarget)) close(menu, false);
  });

  // Opening the "Create new environment" form puts the cursor in its name field.
  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (details.classList && details.classList.contains("env-create") && details.open) {
      var input = details.querySelector("input[type=text]");
      if (input) input.focus();
    }
  }, true);
})();
