// Drag & Drop of files on the environment page.
//
// A `.yaml`/`.yml` file dropped anywhere on the page goes to the form marked
// data-dropzone="yaml" (Deploy with YAML File); a `.env` file dropped on the Secret Management
// section (data-dropzone-area="dotenv") goes to the form marked data-dropzone="dotenv". The
// dropped file is put into the form's own file input and the form is submitted through htmx,
// so the drop and the file button take the same path: without this script the forms still
// post, as plain multipart uploads, and the server answers with a page instead of a dialog.
(function () {
  "use strict";

  var depth = 0;

  function page() { return document.querySelector(".env-page"); }

  function kindOf(name) {
    var lower = (name || "").toLowerCase();
    if (/\.(ya?ml)$/.test(lower)) return "yaml";
    if (lower === ".env" || /\.env$/.test(lower) || /^\.env\./.test(lower) || /\.env\.[a-z]+$/.test(lower)) return "dotenv";
    return null;
  }

  function hasFiles(event) {
    var types = event.dataTransfer && event.dataTransfer.types;
    return !!types && Array.prototype.indexOf.call(types, "Files") >= 0;
  }

  function clearHighlight() {
    depth = 0;
    document.querySelectorAll(".is-dropping").forEach(function (el) { el.classList.remove("is-dropping"); });
  }

  function submitWith(form, file) {
    var input = form.querySelector("input[type=file]");
    var transfer = new DataTransfer();
    transfer.items.add(file);
    input.files = transfer.files;
    if (window.htmx) {
      htmx.trigger(form, "submit");
    } else {
      form.submit();
    }
  }

  document.addEventListener("dragenter", function (event) {
    if (!hasFiles(event) || !page()) return;
    depth += 1;
    page().classList.add("is-dropping");
    var area = event.target.closest && event.target.closest("[data-dropzone-area]");
    document.querySelectorAll("[data-dropzone-area]").forEach(function (el) { el.classList.toggle("is-dropping", el === area); });
  });

  document.addEventListener("dragleave", function (event) {
    if (!hasFiles(event)) return;
    depth = Math.max(0, depth - 1);
    if (depth === 0) clearHighlight();
  });

  document.addEventListener("dragover", function (event) {
    // Without this the browser opens the dropped file instead of handing it to the page.
    if (hasFiles(event) && page()) event.preventDefault();
  });

  document.addEventListener("drop", function (event) {
    if (!hasFiles(event) || !page()) return;
    event.preventDefault();
    clearHighlight();
    var file = event.dataTransfer.files[0];
    if (!file) return;
    var kind = kindOf(file.name);
    var area = event.target.closest && event.target.closest("[data-dropzone-area]");
    if (kind === null && area) kind = area.getAttribute("data-dropzone-area");
    if (kind === "dotenv" && !area) {
      // A .env dropped elsewhere: the secrets form, if this tab shows it.
      area = document.querySelector("[data-dropzone-area=dotenv]");
    }
    var form = document.querySelector("form[data-dropzone=" + (kind || "yaml") + "]");
    if (!form) return;
    submitWith(form, file);
  });
})();
