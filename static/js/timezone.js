// Tells the portal the browser's time zone, once: pages show times in it until the person
// chooses one on their profile (usage_portal/web/timezones.py). A cookie rather than a request
// of its own, so it rides on the next page; it is written again only when the zone changes
// (a laptop that travelled). The sign-in page carries this script, so the first page after
// signing in already reads in the right zone.
(function () {
  "use strict";
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  // IANA names only ("Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"): nothing
  // a cookie must escape. The server checks the name against the zones it knows anyway.
  if (!zone || !/^[A-Za-z0-9_+\/-]{1,64}$/.test(zone)) {
    return;
  }
  var current = document.cookie.split("; ").filter(function (c) { return c.indexOf("tz=") === 0; })[0];
  if (current === "tz=" + zone) {
    return;
  }
  var secure = window.location.protocol === "https:" ? "; Secure" : "";
  document.cookie = "tz=" + zone + "; Path=/; Max-Age=31536000; SameSite=Lax" + secure;
})();
