// The web monitor of `dipeo serve`: the executions (the `executions` query, every second), and
// one execution (`/?execution=ID`): its diagram drawn by Mermaid from the `execution_graph`
// query, its nodes' status live from the `execution_updates` subscription (graphql-transport-ws),
// a node's output on click, and pause / resume / abort (the `control_execution` mutation).
// A server with a token is opened as `/?token=T`: the page sends T with every request.
"use strict";
(() => {
  const API = "/graphql";
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const executionId = params.get("execution");

  const LIST = `query { executions(limit: 50) {
    id status diagram_id started_at duration_seconds is_active } }`;
  const UPDATES = `subscription ($id: ExecutionID!) { execution_updates(execution_id: $id) {
    id status diagram_id started_at ended_at node_states node_outputs error is_active
    duration_seconds } }`;
  const GRAPH = `query ($id: ExecutionID!) { execution_graph(id: $id) { mermaid node_ids } }`;
  const CONTROL = `mutation ($data: ExecutionControlInput!) { control_execution(data: $data) {
    success message error } }`;

  const $ = (selector) => document.querySelector(selector);

  async function gql(query, variables) {
    const headers = { "content-type": "application/json" };
    if (token) headers.authorization = "Bearer " + token;
    const response = await fetch(API, {
      method: "POST", headers, body: JSON.stringify({ query, variables: variables || {} }),
    });
    if (!response.ok) throw new Error(`${response.status}: ${(await response.text()).trim()}`);
    const body = await response.json();
    if (body.errors) throw new Error(body.errors.map((e) => e.message).join("; "));
    return body.data;
  }

  function problem(message) {
    $("#connection").textContent = message || "";
  }

  function linkTo(id) {
    const query = new URLSearchParams({ execution: id });
    if (token) query.set("token", token);
    return "/?" + query;
  }

  function cell(row, value) {
    const td = document.createElement("td");
    td.textContent = value == null ? "" : String(value);
    row.append(td);
    return td;
  }

  function statusCell(row, status) {
    const span = document.createElement("span");
    span.className = "status";
    span.dataset.status = status;
    span.textContent = status;
    cell(row, "").append(span);
  }

  // -- the list --------------------------------------------------------------------------------

  function showList(items) {
    const rows = items.map((item) => {
      const row = document.createElement("tr");
      row.dataset.execution = item.id;
      row.dataset.status = item.status;
      const a = document.createElement("a");
      a.href = linkTo(item.id);
      a.textContent = item.id;
      cell(row, "").append(a);
      cell(row, item.diagram_id || "(inline)");
      statusCell(row, item.status);
      cell(row, (item.started_at || "").replace("T", " ").slice(0, 19));
      cell(row, item.duration_seconds == null ? "" : item.duration_seconds.toFixed(1) + " s");
      row.addEventListener("click", () => { location.href = linkTo(item.id); });
      return row;
    });
    $("#executions tbody").replaceChildren(...rows);
    $("#empty").hidden = items.length > 0;
  }

  async function pollList() {
    try {
      showList((await gql(LIST)).executions);
      problem("");
    } catch (error) {
      problem(error.message);
    }
    setTimeout(pollList, 1000);
  }

  // -- one execution ---------------------------------------------------------------------------

  let current = null;      // the last state the subscription sent
  let selected = null;     // the node whose output is shown
  let drawnKey = null;     // the node statuses the picture shows
  let drawing = false;
  let drawAgain = false;
  let renders = 0;

  function subscribe(id) {
    let ended = false;
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + API, "graphql-transport-ws");
    ws.onopen = () => ws.send(JSON.stringify({ type: "connection_init", payload: token ? { token } : {} }));
    ws.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.type === "connection_ack") {
        ws.send(JSON.stringify({
          id: "1", type: "subscribe", payload: { query: UPDATES, variables: { id } },
        }));
      } else if (data.type === "ping") {
        ws.send(JSON.stringify({ type: "pong" }));
      } else if (data.type === "next") {
        if (data.payload.errors) problem(data.payload.errors.map((e) => e.message).join("; "));
        else { problem(""); showRun(data.payload.data.execution_updates); }
      } else if (data.type === "error") {
        ended = true;  // the execution is not there: retrying will not find it either
        problem(data.payload.map((e) => e.message).join("; "));
      } else if (data.type === "complete") {
        ended = true;  // the final state came: nothing more will change
        ws.close();
      }
    };
    ws.onclose = (event) => {
      if (ended) return;
      problem(`live updates closed (${event.code} ${event.reason}); reconnecting`);
      setTimeout(() => subscribe(id), 1000);
    };
  }

  function showRun(state) {
    current = state;
    document.title = `${state.id} ${state.status} - dipeo monitor`;
    $("#run-id").textContent = state.id;
    $("#run-status").textContent = state.status;
    $("#run-status").dataset.status = state.status;
    const took = state.duration_seconds == null ? "" : `, ${state.duration_seconds.toFixed(1)} s`;
    const started = (state.started_at || "").replace("T", " ").slice(0, 19);
    const diagram = state.diagram_id || "(inline diagram)";
    $("#run-diagram").textContent = `${diagram}, started ${started} UTC${took}`;
    $("#run-error").textContent = state.error || "";
    const active = Boolean(state.is_active);
    $("#pause").disabled = !active || state.status === "PAUSED";
    $("#resume").disabled = state.status !== "PAUSED";
    $("#abort").disabled = !active;

    const nodes = Object.entries(state.node_states || {});
    const rows = nodes.map(([id, node]) => {
      const row = document.createElement("tr");
      row.dataset.nodeId = id;
      row.dataset.status = node.status;
      if (id === selected) row.classList.add("selected");
      cell(row, node.label || id);
      cell(row, node.type);
      statusCell(row, node.status);
      cell(row, node.iterations);
      row.addEventListener("click", () => select(id));
      return row;
    });
    $("#nodes tbody").replaceChildren(...rows);
    markPicture();
    if (selected) showOutput(selected);
    const key = nodes.map(([id, node]) => `${id}=${node.status}:${node.iterations}`).join(",");
    if (key !== drawnKey) {
      drawnKey = key;
      draw();
    }
  }

  // Draws again after every change of a node's status (one drawing at a time; the last
  // change always gets drawn).
  async function draw() {
    if (drawing) { drawAgain = true; return; }
    drawing = true;
    try {
      do {
        drawAgain = false;
        const graph = (await gql(GRAPH, { id: current.id })).execution_graph;
        if (!graph) return;
        renders += 1;
        const { svg } = await window.mermaid.render(`picture-${renders}`, graph.mermaid);
        const box = $("#picture");
        box.innerHTML = svg;
        box.querySelectorAll("g.node").forEach((g) => {
          const match = /flowchart-n(\d+)-/.exec(g.id);
          const id = match ? graph.node_ids[Number(match[1])] : null;
          if (!id) return;
          g.dataset.nodeId = id;
          g.addEventListener("click", () => select(id));
        });
        markPicture();
      } while (drawAgain);
    } catch (error) {
      $("#picture").textContent = `The diagram could not be drawn: ${error.message}`;
    } finally {
      drawing = false;
    }
  }

  function markPicture() {
    if (!current) return;
    $("#picture").querySelectorAll("g.node[data-node-id]").forEach((g) => {
      const node = (current.node_states || {})[g.dataset.nodeId];
      if (node) g.dataset.status = node.status;
      g.classList.toggle("selected", g.dataset.nodeId === selected);
    });
  }

  function select(id) {
    selected = id;
    document.querySelectorAll("#nodes tbody tr").forEach((row) => {
      row.classList.toggle("selected", row.dataset.nodeId === id);
    });
    markPicture();
    showOutput(id);
  }

  function showOutput(id) {
    const node = (current.node_states || {})[id] || {};
    const output = (current.node_outputs || {})[id];
    $("#outputs-title").textContent = `${node.label || id}: ${node.status || ""}`;
    let text = output === undefined ? "(no output yet)" : JSON.stringify(output, null, 2);
    if (node.error) text = `error: ${node.error}\n\n${text}`;
    if (node.skip_reason) text = `skipped: ${node.skip_reason}\n\n${text}`;
    $("#output").textContent = text;
  }

  async function control(action) {
    const said = $("#control-message");
    said.textContent = `${action}...`;
    try {
      const data = { execution_id: current.id, action };
      const result = (await gql(CONTROL, { data })).control_execution;
      said.textContent = result.success ? result.message : result.error;
    } catch (error) {
      said.textContent = error.message;
    }
  }

  // -- start -----------------------------------------------------------------------------------

  if (executionId) {
    $("#run-view").hidden = false;
    window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict" });
    for (const action of ["pause", "resume", "abort"]) {
      $("#" + action).addEventListener("click", () => control(action));
    }
    $("#home").href = token ? "/?" + new URLSearchParams({ token }) : "/";
    subscribe(executionId);
  } else {
    $("#list-view").hidden = false;
    pollList();
  }
})();
