// The playground: sends each message to /playground/chat (the native chat endpoint, on the
// admin session), streams the answer in, and shows under it which model answered, why
// (the answer's routing explanation and attempts), its tokens, cost and latency. The
// conversation id lives in the page's URL, so a reload continues the conversation.
(function () {
  "use strict";

  const root = document.getElementById("playground");
  if (!root) return;
  const config = JSON.parse(document.getElementById("playground-config").textContent);
  const $ = (id) => document.getElementById(id);
  const form = $("chat-form");
  const conversation = $("conversation");
  const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
  const state = { id: config.conversationId, cost: Number(config.conversationCost) || 0, answers: 0 };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([name, value]) => {
      if (value !== undefined && value !== null) node.setAttribute(name, value);
    });
    children.flat().forEach((child) => {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    });
    return node;
  }

  function usd(value) {
    // As the pages round money: 8 decimals, trailing zeros trimmed down to cents.
    const [whole, fraction] = Number(value || 0).toFixed(8).split(".");
    return `$${whole}.${fraction.replace(/0+$/, "").padEnd(2, "0")}`;
  }

  function newId() {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    return "pg-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  function remember() {
    const url = new URL(window.location.href);
    url.searchParams.set("route", $("target").value);
    if (state.id) url.searchParams.set("conversation", state.id);
    else url.searchParams.delete("conversation");
    history.replaceState(null, "", url);
    $("conversation-id").textContent = state.id || "(new)";
    $("conversation-cost").textContent = usd(state.cost);
    $("conversation-turns").textContent = state.answers ? `(${state.answers} answer${state.answers > 1 ? "s" : ""} here)` : "";
  }

  // --- the explanation of one answer ---------------------------------------------------

  function table(head, rows, className) {
    return el(
      "table",
      { class: "figures " + (className || "") },
      el("thead", null, el("tr", null, head.map((h) => el("th", null, h)))),
      el("tbody", null, rows.map((cells) => el("tr", null, cells.map((c) => el("td", null, c)))))
    );
  }

  function explanation(answer) {
    const routing = answer.routing || {};
    const facts = [
      ["route", routing.route || answer.route],
      ["strategy", routing.strategy],
      ["tier", routing.tier && `${routing.tier} (${routing.category}, score ${Number(routing.score).toFixed(2)})`],
      ["arm", routing.arm],
      ["override", routing.override],
      ["order", (routing.order || []).join(" → ")],
    ].filter(([, value]) => value);
    const attempts = answer.attempts || [];
    const tried = new Set(attempts.map((a) => a.model));
    // Models not called at all (cooling down, another request's trial, a window too small):
    // the attempts list the others, skipped ones with their reason.
    const passed = (routing.skipped || []).filter((s) => !tried.has(s.model));
    const headline = [answer.source, ...passed.map((s) => `${s.model}: ${s.reason}`)].filter(Boolean).join("; ");
    const details = el(
      "details",
      { class: "explanation", open: "" },
      el("summary", null, `Why this model${headline ? ` (${headline})` : ""}`),
      el("dl", { class: "facts" }, facts.flatMap(([name, value]) => [el("dt", null, name), el("dd", null, value)]))
    );
    if (passed.length) {
      details.append(el("h4", null, "Passed over"), table(["model", "reason"], passed.map((s) => [s.model, s.reason]), "skipped"));
    }
    if (attempts.length) {
      const rows = attempts.map((a, n) => [n + 1, a.model, a.provider, a.route, a.outcome, `${a.latency_ms} ms`, a.reason || a.error || ""]);
      details.append(el("h4", null, "Attempts"), table(["#", "model", "provider", "route", "outcome", "latency", "why"], rows, "attempts"));
    }
    return details;
  }

  function meta(answer) {
    const usage = answer.usage || {};
    const parts = [
      `${usage.input_tokens ?? 0} in / ${usage.output_tokens ?? 0} out tokens`,
      usd(answer.cost_usd),
      `${answer.latency_ms} ms` + (answer.ttft_ms != null ? ` (first token ${answer.ttft_ms} ms)` : ""),
      `request ${String(answer.request_id || "").slice(0, 12)}`,
    ];
    return el("div", { class: "meta" }, parts.join(" · "));
  }

  function finish(turn, answer) {
    // Only the latest answer's explanation stays open; the earlier ones fold.
    conversation.querySelectorAll("details.explanation[open]").forEach((d) => (d.open = false));
    turn.who.textContent = `${answer.model} · ${answer.provider} · ${answer.source}`;
    turn.node.append(meta(answer), explanation(answer));
    turn.node.dataset.model = answer.model;
    turn.node.dataset.source = answer.source;
    state.cost += Number(answer.cost_usd) || 0;
    state.answers += 1;
    remember();
    conversation.scrollTop = conversation.scrollHeight;
  }

  function failed(turn, body, status) {
    const error = (body && body.error) || {};
    turn.node.classList.add("turn-error");
    turn.text.textContent = `${error.type || "error"} (${status}): ${error.message || "the request failed"}`;
    if (error.attempts) turn.node.append(explanation({ attempts: error.attempts, routing: {} }));
  }

  // --- sending -------------------------------------------------------------------------

  function addTurn(role, text) {
    const who = el("div", { class: "who" }, role === "user" ? "you" : "…");
    const body = el("div", { class: "text" }, text || "");
    const node = el("div", { class: `turn turn-${role}` }, who, body);
    conversation.querySelector(".empty-conversation")?.remove();
    conversation.append(node);
    conversation.scrollTop = conversation.scrollHeight;
    return { node, who, text: body };
  }

  function body(message) {
    const data = { message, route: $("target").value, stream: $("stream").checked, conversation_id: state.id };
    const system = $("system").value.trim();
    if (system) data.system = system;
    if ($("temperature").value !== "") data.temperature = Number($("temperature").value);
    if ($("max-tokens").value !== "") data.max_tokens = Number($("max-tokens").value);
    return data;
  }

  async function readEvents(response, turn) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] || "{}");
        if (event === "delta" && data.content) turn.text.textContent += data.content;
        else if (event === "done") finish(turn, data);
        else if (event === "error") {
          finish(turn, data);
          turn.node.classList.add("turn-error");
          turn.node.append(el("p", { class: "errornote" }, `The answer was cut: ${data.error.message}`));
        }
      }
    }
  }

  async function send(event) {
    event.preventDefault();
    const message = $("message").value.trim();
    if (!message) return;
    if (!state.id) state.id = newId();
    remember();
    $("send").disabled = true;
    $("chat-status").textContent = "waiting for the answer…";
    addTurn("user", message);
    $("message").value = "";
    const turn = addTurn("assistant");
    try {
      const response = await fetch(root.dataset.chatUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify(body(message)),
      });
      const streamed = (response.headers.get("Content-Type") || "").startsWith("text/event-stream");
      if (!response.ok) failed(turn, await response.json().catch(() => null), response.status);
      else if (streamed) await readEvents(response, turn);
      else {
        const answer = await response.json();
        turn.text.textContent = answer.content;
        finish(turn, answer);
      }
    } catch (error) {
      failed(turn, { error: { type: "network_error", message: error.message } }, "-");
    } finally {
      $("send").disabled = false;
      $("chat-status").textContent = "";
      $("message").focus();
    }
  }

  // --- failing the primary on the simulator ---------------------------------------------

  function showFaultPanel() {
    const target = config.targets[$("target").value] || {};
    $("fault-panel").hidden = !target.simulated;
    $("fault-model").textContent = target.primary || "";
  }

  async function fault(action) {
    const route = $("target").value;
    const response = await fetch(root.dataset.faultUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ route, action }),
    });
    const data = await response.json().catch(() => ({}));
    $("fault-status").textContent = !response.ok
      ? `Refused: ${data.error?.message || response.status}`
      : action === "fail"
        ? `${data.model} now fails every call (529 overloaded). Send a message to see the failover.`
        : `${data.model} answers again and is back in rotation.`;
  }

  form.addEventListener("submit", send);
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  $("target").addEventListener("change", () => {
    showFaultPanel();
    remember();
  });
  $("new-conversation").addEventListener("click", () => {
    state.id = null;
    state.cost = 0;
    state.answers = 0;
    conversation.replaceChildren();
    remember();
  });
  $("fail-primary").addEventListener("click", () => fault("fail"));
  $("restore-primary").addEventListener("click", () => fault("restore"));
  showFaultPanel();
  remember();
})();
