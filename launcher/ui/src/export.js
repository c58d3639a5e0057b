// Export conversations as Markdown or JSON files, made in the browser
// from what the API returned (nothing leaves the computer).

export function toMarkdown(conversations) {
  return conversations.map((c) => {
    const lines = [`# ${c.title || "Untitled conversation"}`, "", `_Started ${c.created_at}_`, ""];
    for (const m of c.messages || []) {
      const who = m.role === "user" ? "You" : m.role === "assistant" ? "Jarvis" : "System";
      lines.push(`## ${who}`, "", m.content, "");
    }
    return lines.join("\n");
  }).join("\n---\n\n");
}

export function exportConversation(conversations, format) {
  const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
  const single = conversations.length === 1;
  const base = single ? slug(conversations[0].title) || "conversation" : `jarvis-conversations-${stamp}`;
  const [text, type, ext] = format === "json"
    ? [JSON.stringify(single ? conversations[0] : { conversations }, null, 2), "application/json", "json"]
    : [toMarkdown(conversations), "text/markdown", "md"];
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = `${base}.${ext}`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function slug(title) {
  return (title || "").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 60);
}
