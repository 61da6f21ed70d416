// Copy buttons and the modal's Cancel. Everything else works without JavaScript.
document.addEventListener("click", (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const source = document.getElementById(copy.dataset.copy);
    const text = source ? source.textContent.trim() : "";
    const done = () => {
      const label = copy.textContent;
      copy.textContent = "Copied";
      setTimeout(() => { copy.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => selectText(source));
    } else {
      selectText(source);
    }
    return;
  }
  if (event.target.closest("[data-close-modal]")) {
    document.getElementById("modal").innerHTML = "";
  }
});

// Copy buttons outside the snippets (the recovery codes) are shown once they can work.
document.querySelectorAll("[data-copy][data-js-only]").forEach((button) => { button.hidden = false; });

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    const modal = document.getElementById("modal");
    if (modal && modal.innerHTML.trim()) modal.innerHTML = "";
  }
});

// Focus the first field of a modal when it opens, so keyboard users land in it.
document.addEventListener("htmx:afterSwap", (event) => {
  if (event.detail.target.id === "modal") {
    const first = event.detail.target.querySelector(
      "input:not([type=hidden]), select, textarea, button",
    );
    if (first) first.focus();
  }
});

function selectText(node) {
  if (!node) return;
  const range = document.createRange();
  range.selectNodeContents(node);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

// Credential snippets (templates/keys/_snippets.html): tabs, downloads and the profile name.
// Downloads are built here from the text already on the page, so no request carries the
// secret again.
const PROFILE_RE = /^[A-Za-z0-9_.@+-]{1,64}$/;

function initSnippets(root) {
  const boxes = [...root.querySelectorAll("[data-snippets]")];
  if (root.matches && root.matches("[data-snippets]")) boxes.push(root);
  boxes.filter((box) => !("ready" in box.dataset)).forEach((box) => {
    box.dataset.ready = "";
    box.querySelectorAll("[data-js-only]").forEach((node) => { node.hidden = false; });
    const tabs = [...box.querySelectorAll('[role="tab"]')];
    const select = (tab, focus) => {
      for (const other of tabs) {
        const selected = other === tab;
        other.setAttribute("aria-selected", String(selected));
        other.tabIndex = selected ? 0 : -1;
        document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
      }
      if (focus) tab.focus();
    };
    tabs.forEach((tab, i) => {
      tab.addEventListener("click", () => select(tab, false));
      tab.addEventListener("keydown", (event) => {
        const next = {
          ArrowRight: tabs[(i + 1) % tabs.length],
          ArrowLeft: tabs[(i - 1 + tabs.length) % tabs.length],
          Home: tabs[0],
          End: tabs[tabs.length - 1],
        }[event.key];
        if (next) {
          event.preventDefault();
          select(next, true);
        }
      });
    });
    if (tabs.length) select(tabs[0], false);
  });
}

initSnippets(document);
document.addEventListener("htmx:load", (event) => initSnippets(event.detail.elt));

document.addEventListener("input", (event) => {
  const input = event.target.closest("[data-profile-input]");
  if (!input) return;
  const profile = input.value.trim();
  const valid = PROFILE_RE.test(profile);
  input.setAttribute("aria-invalid", String(!valid));
  if (!valid) return; // Keep the last usable name in the text rather than a broken file.
  input.closest("[data-snippets]").querySelectorAll("[data-profile]").forEach((span) => {
    span.textContent = profile;
  });
});

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-download]");
  if (!button) return;
  const source = document.getElementById(button.dataset.download);
  const blob = new Blob([source.textContent], { type: button.dataset.type || "text/plain" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = button.dataset.filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
});
