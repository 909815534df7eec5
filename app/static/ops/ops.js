// Refresh the schedules page every 30 s, never while someone is typing a reason.
(function () {
  "use strict";
  var seconds = Number(document.body.getAttribute("data-refresh"));
  if (!seconds) {
    return;
  }
  function busy() {
    var active = document.activeElement;
    if (active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA")) {
      return true;
    }
    return Array.prototype.some.call(document.querySelectorAll("input[name=reason]"), function (input) {
      return input.value !== "";
    });
  }
  window.setInterval(function () {
    if (!document.hidden && !busy()) {
      window.location.reload();
    }
  }, seconds * 1000);
})();
