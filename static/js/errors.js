// One error path for every htmx request on every page.
//
// htmx swaps nothing for a 4xx or 5xx answer and says nothing when the server cannot be
// reached or does not answer, so a button whose request failed looks like a button that did
// nothing. Each of those ends here: the server's own sentence when it sent one as plain text
// (RequestTooBigMiddleware does: "The file is larger than 256 KiB…"), else a generic one by
// status, shown in base.html's alert region (role="alert": read out when it appears).
(function () {
  "use strict";

  // A request with no answer after this long is reported, rather than left spinning for ever.
  htmx.config.timeout = 60000;

  var MESSAGE_LIMIT = 500;

  function generic(status) {
    if (status === 403) return "You are not allowed to do this. Ask an owner of the space.";
    if (status === 404) return "This is gone, or not yours to see. Reload the page to see what is there now.";
    if (status === 413) return "This is larger than ale accepts at once. Send less, or in parts.";
    if (status === 429) return "Too many requests at once. Wait a moment, then try again.";
    if (status >= 500) return "ale could not do this (error " + status + "). Try again in a moment.";
    return "ale refused this request (error " + status + "). Reload the page and try again.";
  }

  function serverMessage(xhr) {
    var type = xhr.getResponseHeader("Content-Type") || "";
    if (type.indexOf("text/plain") !== 0) return "";  // an HTML error page is no sentence to show
    var text = (xhr.responseText || "").trim();
    return text.length > MESSAGE_LIMIT ? text.slice(0, MESSAGE_LIMIT) + "…" : text;
  }

  function makeRegion(parent) {
    var element = document.createElement("div");
    element.className = "request-error";
    element.setAttribute("role", "alert");
    parent.prepend(element);
    return element;
  }

  // base.html's region; inside an open modal dialog, one of the dialog's own, since the page
  // behind a modal is covered and inert.
  function region() {
    var dialog = document.querySelector("dialog[open]:modal");
    if (dialog) return dialog.querySelector(".request-error") || makeRegion(dialog);
    var element = document.getElementById("request-error");
    if (!element) {
      // A page without base.html's region (none today) still says what went wrong.
      element = makeRegion(document.body);
      element.id = "request-error";
    }
    return element;
  }

  function show(text) {
    var element = region();
    var message = document.createElement("p");
    message.textContent = text;
    var dismiss = document.createElement("button");
    dismiss.type = "button";
    dismiss.className = "request-error-dismiss";
    dismiss.setAttribute("aria-label", "Dismiss");
    dismiss.textContent = "×";
    element.replaceChildren(message, dismiss);
  }

  document.addEventListener("click", function (event) {
    var dismiss = event.target.closest && event.target.closest(".request-error-dismiss");
    if (dismiss) dismiss.closest(".request-error").replaceChildren();
  });

  document.body.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    show(serverMessage(xhr) || generic(xhr.status));
  });

  document.body.addEventListener("htmx:sendError", function () {
    show("ale could not be reached. Check your connection, then try again.");
  });

  document.body.addEventListener("htmx:timeout", function () {
    show("ale took too long to answer. Try again in a moment.");
  });
})();
