// Small progressive enhancements; every page works without them.
(function () {
  "use strict";
  var toggle = document.querySelector("[data-nav-toggle]");
  var nav = document.getElementById("sidenav");
  if (toggle && nav) {
    toggle.addEventListener("click", function () {
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }
  // Row menus (⋮): close others when one opens, close on Escape.
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      document.querySelectorAll("details.row-menu[open]").forEach(function (d) { d.removeAttribute("open"); });
    }
  });
  document.addEventListener("toggle", function (event) {
    var el = event.target;
    if (el.matches && el.matches("details.row-menu") && el.open) {
      document.querySelectorAll("details.row-menu[open]").forEach(function (d) { if (d !== el) d.removeAttribute("open"); });
    }
  }, true);
})();
