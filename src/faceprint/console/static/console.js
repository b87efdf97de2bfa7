// faceprint console: a drop zone and preview for the probe, confirmations before deletions, "back" links.
// No framework, no build step; the pages work without it.
(function () {
  "use strict";
  function previewOf(zone, input) {
    var img = zone.querySelector("img.preview");
    if (!img || !input.files || !input.files[0]) { return; }
    var url = URL.createObjectURL(input.files[0]);
    img.onload = function () { URL.revokeObjectURL(url); };
    img.src = url;
    img.hidden = false;
  }
  document.querySelectorAll("[data-drop]").forEach(function (zone) {
    var input = zone.querySelector("input[type=file]");
    if (!input) { return; }
    input.addEventListener("change", function () { previewOf(zone, input); });
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("over"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        previewOf(zone, input);
      }
    });
  });
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  document.querySelectorAll("a[data-back]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      if (window.history.length > 1) { event.preventDefault(); window.history.back(); }
    });
  });
}());
