// Passkeys (WebAuthn) for the Security page and the second sign-in step. A form marked
// data-passkey="create" or "get" carries the server's options in data-options; this asks
// the browser for a credential, puts the answer in the form's hidden "credential" field
// and submits the form. Without JavaScript or WebAuthn the forms stay hidden.
(() => {
  const forms = document.querySelectorAll("form[data-passkey]");
  if (!forms.length || !window.PublicKeyCredential || !navigator.credentials) return;

  const toBytes = (value) => {
    const base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer;
  };
  const toText = (buffer) => {
    if (!buffer) return null;
    const bytes = new Uint8Array(buffer);
    let text = "";
    bytes.forEach((b) => { text += String.fromCharCode(b); });
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  const withIds = (list) => (list || []).map((item) => ({ ...item, id: toBytes(item.id) }));

  const creationOptions = (options) => ({
    ...options,
    challenge: toBytes(options.challenge),
    user: { ...options.user, id: toBytes(options.user.id) },
    excludeCredentials: withIds(options.excludeCredentials),
  });
  const requestOptions = (options) => ({
    ...options,
    challenge: toBytes(options.challenge),
    allowCredentials: withIds(options.allowCredentials),
  });

  const answer = (credential) => {
    const r = credential.response;
    const response = { clientDataJSON: toText(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      response.userHandle = toText(r.userHandle);
    }
    return JSON.stringify({
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      response,
      clientExtensionResults: credential.getClientExtensionResults(),
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
    });
  };

  forms.forEach((form) => {
    form.hidden = false;
    document.querySelectorAll("[data-passkey-unsupported]").forEach((node) => { node.hidden = true; });
    const status = form.querySelector("[data-passkey-status]");
    form.addEventListener("submit", async (event) => {
      const field = form.querySelector("input[name=credential]");
      if (field.value) return; // The answer is in: let the form go.
      event.preventDefault();
      const options = JSON.parse(form.dataset.options);
      if (status) status.textContent = "Follow your browser’s prompt…";
      try {
        const credential = form.dataset.passkey === "create"
          ? await navigator.credentials.create({ publicKey: creationOptions(options) })
          : await navigator.credentials.get({ publicKey: requestOptions(options) });
        field.value = answer(credential);
        form.submit();
      } catch (error) {
        if (status) status.textContent = "No passkey was used. You can try again.";
      }
    });
  });
})();
