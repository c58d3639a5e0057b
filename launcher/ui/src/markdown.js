// Model output is untrusted. It is rendered as Markdown by `marked`, then
// sanitized by DOMPurify before it touches the page:
// - raw HTML never executes (scripts, event handlers, iframes, forms,
//   styles and SVG are removed);
// - links keep only http(s) and mailto targets and open in a new tab with
//   no referrer;
// - images are never loaded (a rendered `<img src=...>` could send the
//   conversation to any host): each becomes a text placeholder naming it.
// The page's Content-Security-Policy (img-src 'self') is the second wall.
import { Marked } from "marked";
import DOMPurify from "dompurify";
import hljs from "highlight.js/lib/common";

const marked = new Marked({ gfm: true, breaks: false, async: false });

const SAFE_URL = /^(?:https?:|mailto:)/i;

DOMPurify.addHook("uponSanitizeElement", (node, data) => {
  if (data.tagName === "img") {
    const placeholder = document.createElement("span");
    placeholder.className = "blocked-image";
    const alt = node.getAttribute("alt") || "image";
    const src = node.getAttribute("src") || "";
    placeholder.textContent = `🖼 ${alt}${src ? ` (not loaded: ${src.slice(0, 120)})` : ""}`;
    node.replaceWith(placeholder);
  }
});

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    const href = node.getAttribute("href") || "";
    if (!SAFE_URL.test(href)) {
      node.removeAttribute("href");
    } else {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  }
});

const PURIFY = {
  ALLOWED_TAGS: [
    "p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "span",
    "input", "sup", "sub", "kbd",
  ],
  ALLOWED_ATTR: ["href", "title", "class", "type", "checked", "disabled", "align", "start"],
  ALLOW_DATA_ATTR: false,
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
};

// Renders `text` into `container`, replacing what was there.
export function renderMarkdown(container, text) {
  const html = marked.parse(text ?? "");
  const clean = DOMPurify.sanitize(html, PURIFY);
  container.innerHTML = clean;
  for (const input of container.querySelectorAll("input")) {
    if (input.type !== "checkbox") input.remove();
    else input.disabled = true;
  }
  for (const code of container.querySelectorAll("pre > code")) {
    const language = [...code.classList].find((c) => c.startsWith("language-"))?.slice(9);
    try {
      if (language && hljs.getLanguage(language)) {
        code.innerHTML = hljs.highlight(code.textContent, { language, ignoreIllegals: true }).value;
      } else {
        code.innerHTML = hljs.highlightAuto(code.textContent).value;
      }
      code.classList.add("hljs");
    } catch {
      // Left as plain text.
    }
    const pre = code.parentElement;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy-code";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy code");
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(code.textContent);
        button.textContent = "Copied";
      } catch {
        button.textContent = "Copy failed";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
    pre.append(button);
  }
}
