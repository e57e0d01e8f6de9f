// Copy Address: a button with data-copy puts its text on the clipboard. Where the Clipboard API
// is missing or refused (a page served over plain HTTP from another host), the address shown
// in the button is selected instead, so that Ctrl+C copies it.
(function () {
  "use strict";

  function selectText(button) {
    var target = button.querySelector("code") || button;
    var range = document.createRange();
    range.selectNodeContents(target);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function flash(button, text) {
    var label = button.getAttribute("data-copy-label");
    if (label === null) {
      label = button.firstChild && button.firstChild.nodeType === Node.TEXT_NODE ? button.firstChild.nodeValue : "";
      button.setAttribute("data-copy-label", label);
    }
    if (button.firstChild && button.firstChild.nodeType === Node.TEXT_NODE) button.firstChild.nodeValue = text;
    button.classList.add("is-copied");
    window.setTimeout(function () {
      if (button.firstChild && button.firstChild.nodeType === Node.TEXT_NODE) button.firstChild.nodeValue = label;
      button.classList.remove("is-copied");
    }, 1500);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    var value = button.getAttribute("data-copy");
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(value).then(
        function () { flash(button, "Copied "); },
        function () { selectText(button); flash(button, "Press Ctrl+C "); }
      );
    } else {
      selectText(button);
      flash(button, "Press Ctrl+C ");
    }
  });
})();
