// Spinnakr's tracking snippet: no cookies, no storage, one small POST per event.
//
// <script defer data-key="pk_…" src="https://HOST/js/script.js"></script>
// Attributes: data-key (the site's public key) or data-domain, data-api (collector URL,
// default: the script's origin + /api/event), data-hash (hash routing), data-respect-dnt,
// data-allow-localhost, data-outbound-links, data-file-downloads (optional extension list),
// data-404 (on a 404 page: sends a "404" event with the path).
// Custom events: spinnakr('Signup', {props: {plan: 'pro'}, revenue: {amount: 9, currency: 'EUR'}}).
(function () {
  var w = window;
  var d = document;
  var l = w.location;
  var s = d.currentScript;
  var attr = function (name) {
    return s && s.getAttribute("data-" + name);
  };
  var has = function (name) {
    return attr(name) !== null;
  };
  var api = attr("api") || new URL(s.src).origin + "/api/event";
  var key = attr("key");
  var hashMode = has("hash");
  var queued = (w.spinnakr && w.spinnakr.q) || [];
  var lastPage;
  var lastUrl;
  var depth = 0;
  var engaged = 0;
  var since = d.hidden ? 0 : Date.now();

  function send(name, options, url) {
    options = options || {};
    var done = options.callback;
    if (/^localhost$|^127(\.\d+){3}$|^\[::1\]$/.test(l.hostname) && !has("allow-localhost")) return done && done();
    if (has("respect-dnt") && (navigator.doNotTrack == "1" || w.doNotTrack == "1")) return done && done();
    var body = { n: name, u: url || l.href, r: d.referrer || null, w: w.innerWidth };
    if (key) body.k = key;
    else body.d = attr("domain");
    if (options.props) body.p = options.props;
    if (options.revenue) body.$ = options.revenue;
    if (options.interactive === false) body.i = false;
    if (options.sd != null) {
      body.sd = options.sd;
      body.e = options.e;
    }
    if (hashMode) body.h = 1;
    var ok = function () {
      done && done();
    };
    fetch(api, {
      method: "POST",
      headers: { "Content-Type": "text/plain" },
      body: JSON.stringify(body),
      keepalive: true,
    }).then(ok, ok);
  }

  function scrolled() {
    var el = d.documentElement;
    var height = Math.max(el.scrollHeight, d.body ? d.body.scrollHeight : 0);
    return height ? Math.min(100, Math.round(((w.scrollY + w.innerHeight) / height) * 100)) : 0;
  }

  function engagement() {
    if (since) engaged += Date.now() - since;
    since = d.hidden ? 0 : Date.now();
    if (lastUrl && engaged >= 1000) send("engagement", { sd: depth, e: engaged, interactive: false }, lastUrl);
    engaged = 0;
  }

  function page() {
    var current = l.pathname + (hashMode ? l.hash : "");
    if (current === lastPage) return;
    engagement();
    lastPage = current;
    lastUrl = l.href;
    depth = scrolled();
    send("pageview");
  }

  w.spinnakr = function (name, options) {
    send(name, options);
  };
  for (var i = 0; i < queued.length; i++) send.apply(null, queued[i]);

  ["pushState", "replaceState"].forEach(function (method) {
    var original = history[method];
    history[method] = function () {
      original.apply(this, arguments);
      page();
    };
  });
  w.addEventListener(hashMode ? "hashchange" : "popstate", page);
  w.addEventListener(
    "scroll",
    function () {
      depth = Math.max(depth, scrolled());
    },
    { passive: true },
  );
  d.addEventListener("visibilitychange", function () {
    if (d.hidden) engagement();
    else since = Date.now();
  });

  var extensions = (attr("file-downloads") || "pdf,xlsx,docx,txt,rtf,csv,exe,key,pps,ppt,pptx,7z,pkg,rar,gz,zip,avi,mov,mp4,mpeg,wmv,midi,mp3,wav,wma,dmg").split(",");
  function click(event) {
    if (event.type == "auxclick" && event.button != 1) return;
    var link = event.target.closest && event.target.closest("a[href]");
    if (!link || !/^https?:$/.test(link.protocol)) return;
    var props = { props: { url: link.href } };
    var extension = link.pathname.split(".").pop().toLowerCase();
    if (has("file-downloads") && link.pathname.indexOf(".") > 0 && extensions.indexOf(extension) >= 0) {
      send("File Download", props);
    } else if (has("outbound-links") && link.host != l.host) {
      send("Outbound Link: Click", props);
    }
  }
  d.addEventListener("click", click, true);
  d.addEventListener("auxclick", click, true);

  if (has("404")) send("404", { props: { path: l.pathname } });
  page();
})();
