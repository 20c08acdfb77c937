/* deskbridge chat widget v1: one file, no framework. Embed with one tag:
   <script src="https://desk.example.com/widget/v1/deskbridge-chat.js"
     integrity="sha384-..." crossorigin="anonymous" data-account="acme"></script>
   Optional (identity verification): data-user-id, data-email, data-name, data-user-hash,
   data-email-hash (the email's own HMAC, when a user id is given);
   data-language (else the browser's). The page's CSP must allow the gateway in
   connect-src (socket, uploads) and img-src (the visitor's images).
   Docs: docs/channels/webchat.md */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__deskbridgeChat) { return; }
  window.__deskbridgeChat = true;
  var d = script.dataset;
  var account = d.account;
  var base = new URL(script.src);
  var wsUrl = (base.protocol === "https:" ? "wss://" : "ws://") + base.host +
    "/widget/v1/" + encodeURIComponent(account) + "/socket";
  var store = "deskbridge-chat:" + account + ":";
  var TEXTS = {
    en: { open: "Chat with us", title: "Chat", away: "We are away: leave a message",
      input: "Write a message", send: "Send", email: "Your email", connecting: "connecting",
      connected: "connected", reconnecting: "reconnecting" },
    es: { open: "Chatea con nosotros", title: "Chat", away: "No estamos: déjanos un mensaje",
      input: "Escribe un mensaje", send: "Enviar", email: "Tu email", connecting: "conectando",
      connected: "conectado", reconnecting: "reconectando" },
    de: { open: "Chatten Sie mit uns", title: "Chat", away: "Wir sind nicht da: schreiben Sie uns",
      input: "Nachricht schreiben", send: "Senden", email: "Ihre E-Mail", connecting: "verbinde",
      connected: "verbunden", reconnecting: "verbinde neu" },
    fr: { open: "Discutez avec nous", title: "Chat", away: "Absents : laissez un message",
      input: "Écrivez un message", send: "Envoyer", email: "Votre e-mail", connecting: "connexion",
      connected: "connecté", reconnecting: "reconnexion" },
    pt: { open: "Fale connosco", title: "Chat", away: "Estamos ausentes: deixe uma mensagem",
      input: "Escreva uma mensagem", send: "Enviar", email: "O seu email", connecting: "a ligar",
      connected: "ligado", reconnecting: "a religar" }
  };
  var wanted = (d.language || navigator.language || "en").slice(0, 2).toLowerCase();
  var t = TEXTS[wanted] || TEXTS.en;
  var user = d.userHash ? { user_id: d.userId || null, email: d.email || null,
    name: d.name || null, hash: d.userHash, email_hash: d.emailHash || null } : null;

  function load(name, fallback) {
    try { var v = localStorage.getItem(store + name); return v ? JSON.parse(v) : fallback; }
    catch (e) { return fallback; }
  }
  function save(name, value) {
    try { localStorage.setItem(store + name, JSON.stringify(value)); } catch (e) { /* private mode */ }
  }
  function newId() {
    var a = new Uint8Array(12); crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text) { e.textContent = text; }
    return e;
  }

  var css = "#deskbridge-chat{position:fixed;right:16px;bottom:16px;z-index:2147483000;font:14px system-ui,sans-serif}" +
    "#deskbridge-chat .dbc-open{border:0;border-radius:24px;padding:12px 18px;background:#1f6feb;color:#fff;cursor:pointer}" +
    "#deskbridge-chat .dbc-panel{display:none;flex-direction:column;width:320px;height:420px;background:#fff;border:1px solid #ccd;border-radius:8px;box-shadow:0 4px 16px #0003}" +
    "#deskbridge-chat.dbc-shown .dbc-panel{display:flex}#deskbridge-chat.dbc-shown .dbc-open{display:none}" +
    "#deskbridge-chat .dbc-head{padding:8px 12px;background:#1f6feb;color:#fff;border-radius:8px 8px 0 0;display:flex;justify-content:space-between}" +
    "#deskbridge-chat .dbc-log{flex:1;overflow-y:auto;padding:8px}" +
    "#deskbridge-chat .dbc-msg{margin:4px 0;padding:6px 10px;border-radius:10px;max-width:80%;white-space:pre-wrap;word-wrap:break-word}" +
    "#deskbridge-chat .dbc-visitor{margin-left:auto;background:#dbeafe}#deskbridge-chat .dbc-agent{background:#f1f1f4}" +
    "#deskbridge-chat .dbc-msg[data-state=pending]{opacity:.6}" +
    "#deskbridge-chat form{display:flex;gap:4px;padding:8px;border-top:1px solid #eee;flex-wrap:wrap}" +
    "#deskbridge-chat input,#deskbridge-chat textarea{flex:1;min-width:0;padding:6px}";
  var style = el("style"); style.textContent = css; document.head.appendChild(style);

  var root = el("div"); root.id = "deskbridge-chat";
  var opener = el("button", "dbc-open", t.open); opener.type = "button";
  var panel = el("div", "dbc-panel");
  var head = el("div", "dbc-head");
  var title = el("span", "", t.title);
  var status = el("span", "dbc-status", t.connecting); status.id = "dbc-status";
  head.appendChild(title); head.appendChild(status);
  var log = el("div", "dbc-log"); log.id = "dbc-log";
  var form = el("form");
  var email = el("input"); email.type = "email"; email.placeholder = t.email; email.id = "dbc-email";
  email.style.display = "none"; email.style.flexBasis = "100%";
  var input = el("textarea"); input.rows = 2; input.id = "dbc-input"; input.placeholder = t.input;
  var send = el("button", "", t.send); send.type = "submit"; send.id = "dbc-send";
  form.appendChild(email); form.appendChild(input); form.appendChild(send);
  panel.appendChild(head); panel.appendChild(log); panel.appendChild(form);
  root.appendChild(opener); root.appendChild(panel);
  opener.addEventListener("click", function () { root.classList.add("dbc-shown"); input.focus(); });

  var outbox = load("outbox", []);   // messages not acknowledged yet, in order
  var lastSeq = 0;                   // the highest server number shown on this page
  var ws = null, attempt = 0, online = true, retryTimer = null;
  var shown = {};                    // client id -> element

  function render(role, text, id, state, author) {
    var m = (id && shown[id]) || el("div", "dbc-msg dbc-" + role);
    m.textContent = text;
    if (author) { m.title = author; }
    m.dataset.state = state;
    if (id) { m.dataset.id = id; shown[id] = m; }
    if (!m.parentNode) { log.appendChild(m); }
    log.scrollTop = log.scrollHeight;
    return m;
  }
  function setStatus(s) { status.textContent = t[s]; root.dataset.status = s; }
  function setOnline(on) {
    online = on;
    email.style.display = on ? "none" : "";
    title.textContent = on ? t.title : t.away;
  }
  function useLanguages(langs) {
    // the visitor's language when the account serves it, else the account's first
    var lang = langs.indexOf(wanted) >= 0 ? wanted : langs[0];
    t = TEXTS[lang] || TEXTS.en;
    opener.textContent = t.open; input.placeholder = t.input; send.textContent = t.send;
    email.placeholder = t.email;
    useFileTexts(lang);
  }
  function transmit(m) {
    if (ws && ws.readyState === 1) { ws.send(JSON.stringify(m)); }
  }
  function resendLater() {
    if (retryTimer) { return; }
    retryTimer = setTimeout(function () { retryTimer = null; outbox.forEach(transmit); }, 5000);
  }

  // receipts of the visitor's messages and the agent typing (docs/channels/webchat.md)
  var SAID = {
    en: { delivered: "Delivered", read: "Read", typing: "Agent is typing…" },
    es: { delivered: "Entregado", read: "Leído", typing: "El agente está escribiendo…" },
    de: { delivered: "Zugestellt", read: "Gelesen", typing: "Ein Mitarbeiter schreibt…" },
    fr: { delivered: "Distribué", read: "Lu", typing: "Un conseiller écrit…" },
    pt: { delivered: "Entregue", read: "Lida", typing: "O agente está a escrever…" }
  };
  var receipts = {};                 // client id -> delivered | read, as the gateway said
  var typingNote = el("div", "dbc-typing"); typingNote.id = "dbc-typing"; typingNote.hidden = true;
  var typingTimer = null;
  style.textContent += "#deskbridge-chat .dbc-visitor[data-receipt]::after{content:attr(data-label);display:block;font-size:11px;opacity:.7;text-align:right}" +
    "#deskbridge-chat .dbc-typing{padding:0 12px 4px;font-size:12px;color:#556;font-style:italic}";
  panel.insertBefore(typingNote, form);

  function said(key) {
    // in the language the widget speaks (useLanguages picked its TEXTS)
    for (var lang in TEXTS) { if (TEXTS[lang] === t) { return (SAID[lang] || SAID.en)[key]; } }
    return SAID.en[key];
  }
  function showReceipt(id) {
    var m = id && shown[id], state = id && receipts[id];
    if (m && state) { m.dataset.receipt = state; m.dataset.label = said(state); }
  }
  function showTyping(seconds) {
    clearTimeout(typingTimer);
    typingNote.textContent = said("typing");
    typingNote.hidden = !seconds;
    // the gateway says when typing ends; this covers a word lost with the connection
    if (seconds) { typingTimer = setTimeout(function () { showTyping(0); }, seconds * 1000 + 1000); }
  }
  function indicate(f) {
    if (f.type === "typing") { showTyping(f.on ? f.seconds || 5 : 0); return; }
    Object.keys(f.states || {}).forEach(function (id) {
      if (receipts[id] !== "read") { receipts[id] = f.states[id]; }
      showReceipt(id);
    });
  }
  function shownMessage(f) {
    if (f.role === "visitor") { showReceipt(f.id); } else { showTyping(0); }
  }

  // --- files: the paperclip, the upload, files in the transcript -------------------------
  var FILE_TEXTS = {
    en: { attach: "Attach a file", tooLarge: "too large", badType: "this type of file is not accepted",
      failed: "not sent, try again", unavailable: "file unavailable" },
    es: { attach: "Adjuntar un archivo", tooLarge: "demasiado grande",
      badType: "no se acepta este tipo de archivo", failed: "no enviado, inténtalo de nuevo",
      unavailable: "archivo no disponible" },
    de: { attach: "Datei anhängen", tooLarge: "zu groß", badType: "dieser Dateityp wird nicht angenommen",
      failed: "nicht gesendet, bitte erneut versuchen", unavailable: "Datei nicht verfügbar" },
    fr: { attach: "Joindre un fichier", tooLarge: "trop volumineux",
      badType: "ce type de fichier n'est pas accepté", failed: "non envoyé, réessayez",
      unavailable: "fichier indisponible" },
    pt: { attach: "Anexar um ficheiro", tooLarge: "demasiado grande",
      badType: "este tipo de ficheiro não é aceite", failed: "não enviado, tente novamente",
      unavailable: "ficheiro indisponível" }
  };
  var ft = FILE_TEXTS.en;
  var grant = null;                  // the welcome's upload token, size limit and types
  var picker = el("input"); picker.type = "file"; picker.id = "dbc-file"; picker.style.display = "none";
  var attach = el("button", "dbc-attach", "\uD83D\uDCCE"); attach.type = "button"; attach.id = "dbc-attach";
  attach.style.display = "none";

  function setupFiles() {
    style.textContent += "#deskbridge-chat .dbc-attach{border:0;background:none;cursor:pointer;font-size:18px}" +
      "#deskbridge-chat .dbc-file{display:block;margin-top:4px}" +
      "#deskbridge-chat .dbc-file img{display:block;max-width:100%;max-height:160px;border-radius:6px}" +
      "#deskbridge-chat .dbc-file-gone{color:#667}" +
      "#deskbridge-chat .dbc-msg[data-state=refused]{color:#b42318}";
    form.insertBefore(attach, send); form.appendChild(picker);
    attach.addEventListener("click", function () { picker.click(); });
    picker.addEventListener("change", function () {
      var file = picker.files && picker.files[0];
      picker.value = "";
      if (file) { sendFile(file); }
    });
    useFileTexts(wanted);
  }
  function useFileTexts(lang) {
    ft = FILE_TEXTS[lang] || FILE_TEXTS.en;
    attach.title = ft.attach; attach.setAttribute("aria-label", ft.attach);
  }
  function grantUpload(g) {
    grant = g && g.types && g.types.length ? g : null;
    attach.style.display = grant && online ? "" : "none";
    if (grant) { picker.accept = grant.types.join(","); }
  }
  function label(m) { return m.text || (m.label ? "\uD83D\uDCCE " + m.label : ""); }
  function fileRefused(m, code) {
    var why = code === "too_large" ? ft.tooLarge : (code === "type" ? ft.badType : ft.failed);
    render("visitor", label(m) + " \u2014 " + why, m.id, "refused");
  }
  function sendFile(file) {
    var m = { type: "message", id: newId(), text: "", files: [], label: file.name };
    render("visitor", label(m), m.id, "pending");
    if (!grant) { fileRefused(m, "failed"); return; }
    if (file.size > grant.max_bytes) { fileRefused(m, "too_large"); return; }
    var url = base.origin + "/widget/v1/" + encodeURIComponent(account) + "/attachments?name=" +
      encodeURIComponent(file.name);
    fetch(url, { method: "POST", mode: "cors", credentials: "omit", body: file,
      headers: { "Authorization": "Bearer " + grant.token, "Content-Type": "application/octet-stream" } })
      .then(function (r) {
        return r.json().then(function (b) { return { ok: r.ok, body: b }; });
      })
      .then(function (res) {
        if (!res.ok) {
          if (res.body.error === "token" && ws) { ws.close(); }   // a new token comes with the welcome
          fileRefused(m, res.body.error);
          return;
        }
        m.files = [res.body.id]; m.label = res.body.name;
        outbox.push(m); save("outbox", outbox);
        render("visitor", label(m), m.id, "pending");
        transmit(m);
      })
      .catch(function () { fileRefused(m, "failed"); });
  }
  function safeUrl(url) {
    // only http(s) links: a javascript: or data: URL from anywhere is never followed, and
    // a missing one is no link (new URL would make one of the word "undefined")
    if (typeof url !== "string" || !url) { return null; }
    try {
      var u = new URL(url, base);
      return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
    } catch (e) { return null; }
  }
  function showFiles(bubble, files) {
    (Array.isArray(files) ? files : []).forEach(function (file) {
      file = file || {};
      var href = safeUrl(file.url);
      if (!href) {   // said, never linked
        bubble.appendChild(el("span", "dbc-file dbc-file-gone",
          "\uD83D\uDCCE " + (file.name ? file.name + " \u2014 " : "") + ft.unavailable));
        return;
      }
      var a = el("a", "dbc-file"); a.href = href; a.target = "_blank"; a.rel = "noopener noreferrer";
      a.title = file.name || "";
      if (file.type && file.type.indexOf("image/") === 0) {
        var img = el("img"); img.src = href; img.alt = file.name || ""; a.appendChild(img);
      } else { a.textContent = "\uD83D\uDCCE " + (file.name || "file"); }
      bubble.appendChild(a);
    });
  }

  function onFrame(f) {
    if (f.type === "welcome") {
      if (f.visitor) { save("visitor", f.visitor); }
      useLanguages(f.languages || ["en"]);
      setOnline(f.online !== false);
      grantUpload(f.upload);
      setStatus("connected"); attempt = 0;
      outbox.forEach(transmit);      // resend whatever was not acknowledged, in order
    } else if (f.type === "message") {
      if (f.seq <= lastSeq) { return; }
      lastSeq = f.seq;
      var bubble = render(f.role === "visitor" ? "visitor" : "agent", f.text || "",
        f.role === "visitor" ? f.id : null, "sent", f.author);
      showFiles(bubble, f.files);
      shownMessage(f);
    } else if (f.type === "ack") {
      outbox = outbox.filter(function (m) { return m.id !== f.id; }); save("outbox", outbox);
      if (shown[f.id]) { shown[f.id].dataset.state = "sent"; }
    } else if (f.type === "status" || f.type === "typing") {
      indicate(f);
    } else if (f.type === "error") {
      if (f.code === "identity") { save("visitor", null); }
      if (f.code === "invalid" && f.id) {
        outbox = outbox.filter(function (m) { return m.id !== f.id; }); save("outbox", outbox);
        if (shown[f.id]) { shown[f.id].dataset.state = "refused"; }
      } else { resendLater(); }
    }
  }

  function connect() {
    setStatus(attempt ? "reconnecting" : "connecting");
    ws = new WebSocket(wsUrl);
    ws.onopen = function () {
      ws.send(JSON.stringify({ type: "hello", visitor: user ? null : load("visitor", null),
        user: user, language: wanted, after: lastSeq }));
    };
    ws.onmessage = function (e) { try { onFrame(JSON.parse(e.data)); } catch (err) { /* not ours */ } };
    ws.onclose = function () {
      showTyping(0);
      ws = null; attempt += 1; setStatus("reconnecting");
      var delay = Math.min(15000, 500 * Math.pow(2, Math.min(attempt, 5))) * (0.5 + Math.random() / 2);
      setTimeout(connect, delay);
    };
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text) { return; }
    var m = { type: online ? "message" : "offline", id: newId(), text: text };
    if (!online) { m.email = email.value.trim(); }
    outbox.push(m); save("outbox", outbox);
    render("visitor", text, m.id, "pending");
    input.value = "";
    transmit(m);
  });

  setupFiles();
  outbox.forEach(function (m) { render("visitor", label(m), m.id, "pending"); });
  function start() { document.body.appendChild(root); connect(); }
  if (document.body) { start(); } else { document.addEventListener("DOMContentLoaded", start); }
}());
