// Live refresh: an element with data-poll="URL" data-version="V" polls URL (JSON with a "version")
// every 2 s and reloads the page when the version changes, unless a comment is being written;
// then it shows the element's .refresh-note instead, and reloads once the comment is sent.
(function () {
  "use strict";
  var watched = document.querySelector("[data-poll]");
  if (!watched) { return; }
  var url = watched.getAttribute("data-poll");
  var version = watched.getAttribute("data-version");
  var note = document.querySelector(".refresh-note");

  function writing() {
    var fields = document.querySelectorAll("textarea");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value.trim() !== "" || fields[i] === document.activeElement) { return true; }
    }
    return false;
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.ok ? response.json() : null;
      })
      .then(function (state) {
        if (state && state.version !== version) {
          if (!writing()) { window.location.reload(); return; }
          if (note) { note.classList.add("shown"); }
        }
        window.setTimeout(poll, 2000);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }

  window.setTimeout(poll, 2000);
})();
