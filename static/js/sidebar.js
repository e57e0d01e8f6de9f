// The narrow layout's Menu button: shows and hides the sidebar, which the layout hides below
// 820px. The markup is a link to #sidebar, which opens it without this file (`:target` in
// ale.css); here it becomes a button that says whether the sidebar is open.
(function () {
  "use strict";

  var toggle = document.querySelector("[data-sidebar-toggle]");
  var sidebar = document.getElementById("sidebar");
  if (!toggle || !sidebar) return;

  toggle.setAttribute("role", "button");
  toggle.setAttribute("aria-controls", "sidebar");
  toggle.setAttribute("aria-expanded", "false");

  function setOpen(open) {
    sidebar.classList.toggle("is-open", open);
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  }

  function isOpen() {
    return toggle.getAttribute("aria-expanded") === "true";
  }

  toggle.addEventListener("click", function (event) {
    event.preventDefault();  // no jump to #sidebar: the class shows it
    setOpen(!isOpen());
  });

  // A link answers Enter only; a button answers Space too.
  toggle.addEventListener("keydown", function (event) {
    if (event.key === " ") {
      event.preventDefault();
      setOpen(!isOpen());
    }
  });

  // Escape closes it and gives the focus back to the button, as for the other menus.
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && isOpen() && !event.defaultPrevented) {
      setOpen(false);
      toggle.focus();
    }
  });
})();
