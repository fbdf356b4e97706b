// Passkeys of the tobira console: registers one on the passkeys page and
// logs in with one on the login page, through the browser's WebAuthn API.
// The server sends the options with base64url strings and takes the
// answer as JSON with base64url strings (no library; no inline script).
"use strict";
(function () {
  // b64 turns an ArrayBuffer into base64url without padding.
  function b64(buf) {
    var s = "", bytes = new Uint8Array(buf);
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  // bin turns base64url into an ArrayBuffer.
  function bin(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var raw = atob(s), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }
  // post sends body to url and returns the JSON answer, or throws its error.
  function post(url, body, type) {
    return fetch(url, {method: "POST", credentials: "same-origin", headers: {"Content-Type": type}, body: body})
      .then(function (res) {
        return res.json().then(function (j) {
          if (!res.ok) throw new Error(j.error || res.statusText);
          return j;
        });
      });
  }
  // answer is the JSON form of a credential the browser returned.
  function answer(cred) {
    var r = cred.response, out = {id: cred.id, rawId: b64(cred.rawId), type: cred.type,
      clientExtensionResults: cred.getClientExtensionResults(), response: {clientDataJSON: b64(r.clientDataJSON)}};
    if (cred.authenticatorAttachment) out.authenticatorAttachment = cred.authenticatorAttachment;
    if (r.attestationObject) {
      out.response.attestationObject = b64(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = b64(r.authenticatorData);
      out.response.signature = b64(r.signature);
      if (r.userHandle) out.response.userHandle = b64(r.userHandle);
    }
    return JSON.stringify(out);
  }
  function show(msg) {
    var e = document.getElementById("passkey-error");
    if (e) { e.textContent = msg; e.hidden = false; }
  }

  var form = document.getElementById("passkey-form");
  if (form) form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    if (!window.PublicKeyCredential) { show(form.dataset.unsupported); return; }
    var body = new URLSearchParams({name: document.getElementById("passkey-name").value});
    post("/account/passkeys/begin", body, "application/x-www-form-urlencoded").then(function (opt) {
      var pk = opt.publicKey;
      pk.challenge = bin(pk.challenge);
      pk.user.id = bin(pk.user.id);
      (pk.excludeCredentials || []).forEach(function (c) { c.id = bin(c.id); });
      return navigator.credentials.create({publicKey: pk});
    }).then(function (cred) {
      return post("/account/passkeys/finish", answer(cred), "application/json");
    }).then(function (res) { location.assign(res.next); }, function (err) { show(err.message); });
  });

  var login = document.getElementById("passkey-login");
  if (login) login.addEventListener("click", function () {
    if (!window.PublicKeyCredential) { show(login.dataset.fail); return; }
    post("/login/passkey/begin", "", "application/x-www-form-urlencoded").then(function (opt) {
      var pk = opt.publicKey;
      pk.challenge = bin(pk.challenge);
      (pk.allowCredentials || []).forEach(function (c) { c.id = bin(c.id); });
      return navigator.credentials.get({publicKey: pk});
    }).then(function (cred) {
      return post("/login/passkey/finish?next=" + encodeURIComponent(login.dataset.next), answer(cred), "application/json");
    }).then(function (res) { location.assign(res.next); }, function (err) { show(err.message || login.dataset.fail); });
  });
})();
