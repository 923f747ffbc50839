// Copy buttons of the back office: <button data-copy="text">. A file of its
// own, so the admin's Content-Security-Policy needs no inline script.
(function () {
  "use strict";

  function fallbackCopy(text) {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "sr-only";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
    return Promise.resolve();
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) {
      return;
    }
    event.preventDefault();
    const text = button.dataset.copy;
    const copying = navigator.clipboard && window.isSecureContext
      ? navigator.clipboard.writeText(text)
      : fallbackCopy(text);
    copying.then(function () {
      button.dataset.copied = "true";
      const label = button.querySelector("[data-copy-label]");
      if (label) {
        label.textContent = button.dataset.copiedText || "Copied";
      }
    });
  });
})();
