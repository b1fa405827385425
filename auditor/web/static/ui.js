// The UI's only script, served from /static/ui.js so that the pages' Content-Security-Policy
// allows no inline script (channel text can never run as code, even if escaping failed).
document.addEventListener("DOMContentLoaded", function () {
  var all = document.getElementById("all");
  if (all) {
    all.addEventListener("click", function () {
      for (const b of document.querySelectorAll("input[name=fp]")) b.checked = all.checked;
    });
  }
});
