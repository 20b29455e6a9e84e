/* botline embed: a floating launcher that opens the web chat in an iframe panel.
 *
 *   <script src="https://chat.example.com/embed.js"
 *           data-talk-url="https://chat.example.com/chat/ACCESS_KEY"
 *           data-color="#4f46e5" data-position="right"></script>
 *
 * Everything lives in one shadow root, so the host page's CSS cannot reach it; the only global is
 * window.BotlineEmbed ({open, close, toggle, isOpen, destroy}). Including the script twice is
 * harmless: the second copy sees BotlineEmbed and stops.
 */
(function () {
  "use strict";

  if (window.BotlineEmbed) return;

  var DEFAULT_COLOR = "#1f2937";
  var EMBED_HASH = "botline-embed"; // asks the chat page for a close button in its own header
  var OWN_BAR_AFTER_MS = 1500; // no word from the chat page by then (refused, offline): show our close bar
  var NARROW_QUERY = "(max-width: 520px)";
  var script = document.currentScript || document.querySelector("script[data-talk-url]");
  if (!script || !script.getAttribute("data-talk-url")) {
    console.warn("[botline] embed.js needs a data-talk-url attribute");
    return;
  }

  var talkUrl;
  try {
    talkUrl = new URL(script.getAttribute("data-talk-url"), document.baseURI);
  } catch (err) {
    console.warn("[botline] data-talk-url is not a URL", err);
    return;
  }
  var chatOrigin = talkUrl.origin;
  var fixedColor = script.getAttribute("data-color");
  var position = script.getAttribute("data-position") === "left" ? "left" : "right";
  var labels = {
    open: script.getAttribute("data-open-label") || "Open chat",
    close: script.getAttribute("data-close-label") || "Close chat",
  };

  var ICON_CHAT = '<svg viewBox="0 0 24 24" width="26" height="26" fill="none" stroke="currentColor" stroke-width="2" ' +
    'stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">' +
    '<path d="M21 12a8 8 0 0 1-11.6 7.14L4 20l1-4.3A8 8 0 1 1 21 12Z"/></svg>';
  var ICON_CLOSE = '<svg viewBox="0 0 24 24" width="22" height="22" fill="none" stroke="currentColor" stroke-width="2.2" ' +
    'stroke-linecap="round" aria-hidden="true" focusable="false"><path d="M6 6l12 12M18 6 6 18"/></svg>';

  var STYLES = [
    ":host { all: initial; }",
    "* { box-sizing: border-box; }",
    ".launcher { position: fixed; bottom: 20px; SIDE: 20px; z-index: 2147483000; width: 58px; height: 58px;",
    "  display: grid; place-items: center; padding: 0; border: 0; border-radius: 50%; cursor: pointer;",
    "  background: var(--botline-color); color: var(--botline-on-color);",
    "  box-shadow: 0 8px 24px rgba(16,24,40,.22), 0 2px 6px rgba(16,24,40,.12);",
    "  transition: transform .18s ease, box-shadow .18s ease; }",
    ".launcher:hover { transform: scale(1.05); box-shadow: 0 10px 28px rgba(16,24,40,.28), 0 2px 6px rgba(16,24,40,.14); }",
    ".launcher:focus-visible, .close:focus-visible { outline: 3px solid var(--botline-color); outline-offset: 3px; }",
    ".launcher .when-open { display: none; }",
    ".launcher[aria-expanded='true'] .when-open { display: block; }",
    ".launcher[aria-expanded='true'] .when-closed { display: none; }",
    ".panel { position: fixed; bottom: 92px; SIDE: 20px; z-index: 2147483000; width: 400px; height: 640px;",
    "  max-height: calc(100vh - 120px); max-width: calc(100vw - 40px); display: flex; flex-direction: column;",
    "  overflow: hidden; border-radius: 18px; background: #fff;",
    "  box-shadow: 0 24px 60px rgba(16,24,40,.22), 0 4px 12px rgba(16,24,40,.10);",
    "  opacity: 0; visibility: hidden; transform: translateY(12px) scale(.98); transform-origin: bottom SIDE;",
    "  transition: opacity .18s ease, transform .18s ease, visibility 0s linear .18s; }",
    ".panel.open { opacity: 1; visibility: visible; transform: none; transition: opacity .18s ease, transform .18s ease; }",
    ".bar { flex: none; display: none; align-items: center; justify-content: flex-end; height: 40px; padding: 0 6px;",
    "  background: var(--botline-color); color: var(--botline-on-color); }",
    ".panel.own-bar .bar { display: flex; }",
    ".close { display: grid; place-items: center; width: 32px; height: 32px; padding: 0; border: 0; border-radius: 8px;",
    "  background: transparent; color: inherit; cursor: pointer; }",
    ".close:hover { background: rgba(255,255,255,.16); }",
    "iframe { flex: 1; width: 100%; min-height: 0; border: 0; display: block; background: #fff; }",
    "@media " + NARROW_QUERY + " {",
    "  .panel { inset: 0; width: 100%; height: 100%; max-width: none; max-height: none; border-radius: 0; }",
    "  .panel.open ~ .launcher { display: none; }",
    "}",
    "@media (prefers-reduced-motion: reduce) { .launcher, .panel, .panel.open { transition: none; } }",
  ].join("\n").split("SIDE").join(position);

  function onColor(color) {
    var probe = document.createElement("span");
    probe.style.color = color;
    probe.style.display = "none";
    document.body.appendChild(probe);
    var rgb = (getComputedStyle(probe).color.match(/\d+(\.\d+)?/g) || []).map(Number);
    probe.remove();
    if (rgb.length < 3) return "#ffffff";
    var lin = function (v) { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    var luminance = 0.2126 * lin(rgb[0]) + 0.7152 * lin(rgb[1]) + 0.0722 * lin(rgb[2]);
    return luminance > 0.45 ? "#111827" : "#ffffff";
  }

  function isColor(value) {
    return typeof value === "string" && value.length < 64 && window.CSS && window.CSS.supports("color", value);
  }

  var host, root, launcher, panel, frame, closeButton, lastFocus, barTimer, chatHasCloseButton = false;

  function setColor(color) {
    host.style.setProperty("--botline-color", color);
    host.style.setProperty("--botline-on-color", onColor(color));
  }

  function setLabels() {
    launcher.setAttribute("aria-label", isOpen() ? labels.close : labels.open);
    launcher.title = launcher.getAttribute("aria-label");
    closeButton.setAttribute("aria-label", labels.close);
    closeButton.title = labels.close;
    panel.setAttribute("aria-label", frame.title);
  }

  function isOpen() {
    return Boolean(panel && panel.classList.contains("open"));
  }

  function open() {
    if (!panel || isOpen()) return;
    lastFocus = document.activeElement;
    panel.classList.add("open");
    panel.removeAttribute("aria-hidden");
    frame.removeAttribute("tabindex");
    launcher.setAttribute("aria-expanded", "true");
    setLabels();
    try { frame.focus(); } catch (err) { /* ignore */ }
  }

  function close() {
    if (!panel || !isOpen()) return;
    panel.classList.remove("open");
    panel.setAttribute("aria-hidden", "true");
    frame.setAttribute("tabindex", "-1");
    launcher.setAttribute("aria-expanded", "false");
    setLabels();
    var target = window.matchMedia(NARROW_QUERY).matches || !lastFocus ? launcher : lastFocus;
    if (target && target.focus) target.focus();
  }

  function toggle() {
    if (isOpen()) close(); else open();
  }

  function onMessage(event) {
    if (event.origin !== chatOrigin || !frame || event.source !== frame.contentWindow) return;
    var data = event.data;
    if (!data || typeof data !== "object") return;
    if (data.type === "botline:close") {
      close();
      return;
    }
    if (data.type !== "botline:theme") return;
    if (data.closeButton === true) {
      chatHasCloseButton = true;
      clearTimeout(barTimer);
      panel.classList.remove("own-bar");
    }
    if (!fixedColor && isColor(data.color)) setColor(data.color);
    if (typeof data.openLabel === "string" && !script.getAttribute("data-open-label")) labels.open = data.openLabel.slice(0, 80);
    if (typeof data.closeLabel === "string" && !script.getAttribute("data-close-label")) labels.close = data.closeLabel.slice(0, 80);
    setLabels();
  }

  function onKey(event) {
    if (event.key === "Escape" && isOpen()) close();
  }

  function mount() {
    host = document.createElement("div");
    host.setAttribute("data-botline-embed", "");
    root = host.attachShadow({ mode: "open" });
    var style = document.createElement("style");
    style.textContent = STYLES;

    panel = document.createElement("div");
    panel.className = "panel";
    panel.id = "botline-panel";
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-hidden", "true");

    var bar = document.createElement("div");
    bar.className = "bar";
    closeButton = document.createElement("button");
    closeButton.type = "button";
    closeButton.className = "close";
    closeButton.innerHTML = ICON_CLOSE;
    closeButton.addEventListener("click", close);
    bar.appendChild(closeButton);

    frame = document.createElement("iframe");
    var src = new URL(talkUrl.href);
    src.hash = src.hash ? src.hash.slice(1) + "&" + EMBED_HASH : EMBED_HASH;
    frame.src = src.href;
    frame.addEventListener("load", function () {
      clearTimeout(barTimer);
      barTimer = setTimeout(function () {
        if (!chatHasCloseButton && panel) panel.classList.add("own-bar");
      }, OWN_BAR_AFTER_MS);
    });
    frame.title = script.getAttribute("data-title") || "Chat";
    frame.setAttribute("tabindex", "-1");
    frame.setAttribute("allow", "clipboard-write");
    frame.setAttribute("referrerpolicy", "origin");
    panel.appendChild(bar);
    panel.appendChild(frame);

    launcher = document.createElement("button");
    launcher.type = "button";
    launcher.className = "launcher";
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-controls", "botline-panel");
    launcher.innerHTML = '<span class="when-closed">' + ICON_CHAT + '</span><span class="when-open">' + ICON_CLOSE + "</span>";
    launcher.addEventListener("click", toggle);

    root.appendChild(style);
    root.appendChild(panel);
    root.appendChild(launcher);
    document.body.appendChild(host);

    setColor(isColor(fixedColor) ? fixedColor : DEFAULT_COLOR);
    if (!isColor(fixedColor)) fixedColor = null;
    setLabels();
    window.addEventListener("message", onMessage);
    document.addEventListener("keydown", onKey);
  }

  function destroy() {
    window.removeEventListener("message", onMessage);
    document.removeEventListener("keydown", onKey);
    clearTimeout(barTimer);
    if (host) host.remove();
    host = root = launcher = panel = frame = closeButton = null;
    delete window.BotlineEmbed;
  }

  window.BotlineEmbed = Object.freeze({ open: open, close: close, toggle: toggle, isOpen: isOpen, destroy: destroy });

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount, { once: true });
})();
