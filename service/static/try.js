// The try-it page: lists the models, builds a form from one model's features, and shows the
// answer of the JSON records API. Plain JavaScript, no libraries; every request goes to this
// service, by paths relative to the page (so it also works behind a path prefix).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const modelSelect = $("model");
  const modelsStatus = $("models-status");
  const about = $("about");
  const form = $("form");
  const fields = $("fields");
  const predictButton = $("predict");
  const errorBox = $("error");
  const result = $("result");
  const answer = $("answer");
  const keyForm = $("key-form");
  const keyInput = $("api-key");

  let current = null; // the chosen model's description, as GET /v1/models/{name} returns it
  let generation = 0; // answers to an earlier choice of model are ignored
  let apiKey = ""; // an API key typed into the page (only when the service asks for one)

  // -- talking to the service -----------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, options) {
    let response;
    try {
      const auth = apiKey ? { Authorization: "Bearer " + apiKey } : {};
      response = await fetch(path, { ...options, headers: { Accept: "application/json", ...auth, ...(options && options.headers) } });
    } catch (exc) {
      throw new ApiError("The service could not be reached (" + exc.message + ").");
    }
    const text = await response.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch (exc) {
      body = null;
    }
    if (response.status === 401) {
      keyForm.hidden = false; // the service wants a key: ask for one
    }
    if (!response.ok) {
      const message = body && typeof body.error === "string" ? body.error : text.slice(0, 500) || response.statusText;
      throw new ApiError(message, response.status);
    }
    if (body === null) {
      throw new ApiError("The service answered with something that is not JSON.", response.status);
    }
    return body;
  }

  const modelPath = (name) => "v1/models/" + encodeURIComponent(name);

  // -- small helpers ----------------------------------------------------------------------

  function element(tag, properties, children) {
    const node = document.createElement(tag);
    Object.assign(node, properties || {});
    for (const child of children || []) {
      node.append(child);
    }
    return node;
  }

  const readable = (name) => String(name).replace(/_+/g, " ").trim() || String(name);

  function formatNumber(value) {
    const options = Math.abs(value) >= 100 ? { maximumFractionDigits: 1 } : { maximumSignificantDigits: 4 };
    return value.toLocaleString(undefined, options);
  }

  const percent = (value) => (value * 100).toFixed(1) + "%";

  function showError(title, message) {
    errorBox.replaceChildren(
      element("p", { className: "error-title", textContent: title }),
      element("p", { className: "error-message", textContent: message }),
    );
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.hidden = true;
    errorBox.replaceChildren();
  }

  function failed(title, exc) {
    const status = exc.status ? " (error " + exc.status + ")" : "";
    showError(title + status, exc.message);
  }

  // -- the list of models -----------------------------------------------------------------

  const TASKS = { classification: "picks a class", regression: "predicts a number" };

  async function loadModels() {
    let listed;
    try {
      listed = (await api("v1/models")).models;
    } catch (exc) {
      modelSelect.replaceChildren(element("option", { value: "", textContent: "No models" }));
      modelsStatus.textContent = "";
      failed("The list of models could not be loaded", exc);
      return;
    }
    if (!listed.length) {
      modelSelect.replaceChildren(element("option", { value: "", textContent: "No models" }));
      modelsStatus.textContent = "This service serves no model yet.";
      return;
    }
    const options = [element("option", { value: "", textContent: "Choose a model…" })];
    for (const model of listed) {
      const task = TASKS[model.task] || model.task;
      options.push(element("option", { value: model.name, textContent: model.name + " — " + task }));
    }
    modelSelect.replaceChildren(...options);
    modelSelect.disabled = false;
    modelsStatus.textContent = listed.length === 1 ? "1 model is served." : listed.length + " models are served.";
    const wanted = decodeURIComponent(location.hash.slice(1));
    if (wanted && listed.some((m) => m.name === wanted)) {
      modelSelect.value = wanted;
      await chooseModel(wanted);
    }
  }

  async function chooseModel(name) {
    const mine = ++generation;
    current = null;
    clearError();
    form.hidden = true;
    about.hidden = true;
    result.hidden = true;
    fields.replaceChildren();
    history.replaceState(null, "", name ? "#" + encodeURIComponent(name) : location.pathname + location.search);
    if (!name) {
      return;
    }
    let model;
    try {
      model = await api(modelPath(name));
    } catch (exc) {
      if (mine === generation) {
        failed("The model “" + name + "” could not be loaded", exc);
      }
      return;
    }
    if (mine !== generation) {
      return;
    }
    current = model;
    describeModel(model);
    buildForm(model);
  }

  function describeModel(model) {
    $("description").textContent = model.description || "";
    $("quality").textContent = quality(model);
    about.hidden = !model.description && !$("quality").textContent;
  }

  function quality(model) {
    const metrics = model.metrics || {};
    const baseline = model.baseline || {};
    if (model.task === "classification" && typeof metrics.accuracy === "number") {
      let text = "On examples kept aside during training it was right " + percent(metrics.accuracy) + " of the time";
      if (typeof baseline.accuracy === "number") {
        text += " (always giving the most common answer: " + percent(baseline.accuracy) + ")";
      }
      return text + ".";
    }
    if (model.task === "regression" && typeof metrics.mae === "number") {
      let text = "On examples kept aside during training it was off by " + formatNumber(metrics.mae) + " on average";
      if (typeof baseline.mae === "number") {
        text += " (always giving the average: " + formatNumber(baseline.mae) + ")";
      }
      return text + ".";
    }
    return "";
  }

  // -- the form ---------------------------------------------------------------------------

  function buildForm(model) {
    const rows = model.features.map((feature, index) => field(feature, "feature-" + index));
    fields.replaceChildren(...rows);
    form.hidden = false;
  }

  function field(feature, id) {
    const hintId = id + "-hint";
    const label = element("label", { htmlFor: id, textContent: readable(feature.name) });
    let control;
    let hint;
    if (feature.kind === "numeric") {
      control = element("input", { type: "number", step: "any", inputMode: "decimal", placeholder: "a number" });
      hint = "A number; empty if unknown.";
    } else if (feature.kind === "categorical") {
      control = element("select");
      // One "(missing)" choice: the empty category ("" in the data) and null are the same.
      const missing = element("option", { value: "", textContent: "(missing)" });
      missing.dataset.missing = "true";
      control.append(missing);
      for (const category of feature.categories || []) {
        if (category !== "" && category !== null) {
          control.append(element("option", { value: String(category), textContent: String(category) }));
        }
      }
      hint = "Choose one; (missing) if unknown.";
    } else {
      control = element("textarea", { rows: 3, placeholder: "some text" });
      hint = "Any text; empty if unknown.";
    }
    control.id = id;
    control.name = feature.name;
    control.dataset.kind = feature.kind;
    control.setAttribute("aria-describedby", hintId);
    return element("div", { className: "field" }, [label, control, element("p", { id: hintId, className: "hint", textContent: hint })]);
  }

  // The record the API takes: numbers for numeric features, strings for the others, null
  // where a value is missing. Throws with a message naming the field when a number is bad.
  function record() {
    const values = {};
    for (const control of fields.querySelectorAll("[data-kind]")) {
      const name = control.name;
      const kind = control.dataset.kind;
      if (kind === "numeric") {
        if (control.validity.badInput) {
          throw new ApiError("“" + readable(name) + "” is not a number: correct it or empty the field.");
        }
        if (control.value.trim() === "") {
          values[name] = null;
        } else {
          const number = Number(control.value);
          if (!Number.isFinite(number)) {
            throw new ApiError("“" + readable(name) + "” is too large a number.");
          }
          values[name] = number;
        }
      } else if (kind === "categorical") {
        const option = control.selectedOptions[0];
        values[name] = !option || option.dataset.missing ? null : option.value;
      } else {
        values[name] = control.value === "" ? null : control.value;
      }
    }
    return values;
  }

  async function predict(event) {
    event.preventDefault();
    if (!current) {
      return;
    }
    const model = current;
    const mine = generation;
    clearError();
    let instance;
    try {
      instance = record();
    } catch (exc) {
      result.hidden = true;
      showError("Please check the form", exc.message);
      return;
    }
    predictButton.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      const body = await api(modelPath(model.name) + "/predict", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ instances: [instance] }),
      });
      if (mine === generation) {
        showAnswer(model, body);
      }
    } catch (exc) {
      if (mine === generation) {
        result.hidden = true;
        failed("The model could not answer", exc);
      }
    } finally {
      predictButton.disabled = false;
      form.removeAttribute("aria-busy");
    }
  }

  // -- the answer -------------------------------------------------------------------------

  function showAnswer(model, body) {
    const prediction = body.predictions[0];
    const what = model.target ? "Prediction for “" + readable(model.target) + "”: " : "Prediction: ";
    const value = element("strong", { id: "prediction", className: "prediction" });
    value.dataset.value = JSON.stringify(prediction);
    value.textContent = model.task === "regression" ? formatNumber(prediction) : String(prediction);
    const parts = [element("p", { className: "answer" }, [what, value])];
    if (model.task !== "regression") {
      if (body.probabilities) {
        parts.push(element("h3", { textContent: "How likely each answer is" }));
        parts.push(bars(body.probabilities[0], prediction));
      } else if (body.scores) {
        parts.push(element("h3", { textContent: "Score of each answer (higher is more likely; not a probability)" }));
        parts.push(scores(body.scores[0], prediction));
      }
    }
    if (body.warnings && body.warnings.length) {
      parts.push(unusual(body.warnings, body.warning_count || body.warnings.length));
    }
    parts.push(element("p", { className: "hint", textContent: "Answered by " + body.model + ", version " + body.version + "." }));
    answer.replaceChildren(...parts);
    result.hidden = false;
  }

  // The service's input checks: values unlike anything in the training data, one line each
  // (the feature, the value sent, and what is unusual about it, in the service's words).
  function unusual(warnings, count) {
    const table = element("table", { id: "warnings-table" }, [
      element("thead", {}, [
        element("tr", {}, ["Row", "Feature", "Value", "What is unusual"].map((name) => element("th", { scope: "col", textContent: name }))),
      ]),
    ]);
    const rows = element("tbody");
    for (const warning of warnings) {
      const value = warning.value === null ? "(missing)" : typeof warning.value === "number" ? formatNumber(warning.value) : "“" + warning.value + "”";
      const row = element("tr", {}, [
        element("td", { textContent: String(warning.row) }), // as the API counts: from 0
        element("td", { textContent: readable(warning.feature) }),
        element("td", { textContent: value }),
        element("td", { textContent: warning.message }),
      ]);
      row.dataset.row = String(warning.row);
      row.dataset.feature = warning.feature;
      row.dataset.reason = warning.reason;
      rows.append(row);
    }
    table.append(rows);
    const parts = [
      element("p", { className: "warnings-title", textContent: "This case is unlike the examples the model learned from" }),
      element("p", { textContent: "The answer above may be less reliable: the model had no examples like these values." }),
      table,
    ];
    if (count > warnings.length) {
      parts.push(element("p", { className: "hint", textContent: "And " + (count - warnings.length) + " more." }));
    }
    const box = element("div", { id: "warnings", className: "warnings" }, parts);
    box.setAttribute("role", "status");
    return box;
  }

  function bars(probabilities, prediction) {
    const list = element("ul", { id: "probabilities", className: "bars" });
    for (const [name, probability] of Object.entries(probabilities)) {
      const fill = element("span", { className: "fill" });
      fill.style.width = Math.max(0, Math.min(1, probability)) * 100 + "%";
      const bar = element("span", { className: "bar" }, [fill]);
      bar.setAttribute("aria-hidden", "true");
      const item = element("li", {}, [
        element("span", { className: "class", textContent: name }),
        bar,
        element("span", { className: "value", textContent: percent(probability) }),
      ]);
      item.dataset.class = name;
      item.dataset.probability = String(probability);
      if (name === String(prediction)) {
        item.className = "chosen";
      }
      list.append(item);
    }
    return list;
  }

  function scores(values, prediction) {
    const list = element("ul", { id: "scores", className: "scores" });
    for (const [name, score] of Object.entries(values)) {
      const item = element("li", {}, [
        element("span", { className: "class", textContent: name }),
        element("span", { className: "value", textContent: formatNumber(score) }),
      ]);
      item.dataset.class = name;
      item.dataset.score = String(score);
      if (name === String(prediction)) {
        item.className = "chosen";
      }
      list.append(item);
    }
    return list;
  }

  // -- wiring -----------------------------------------------------------------------------

  keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    apiKey = keyInput.value.trim();
    keyForm.hidden = true;
    clearError();
    loadModels();
  });
  modelSelect.addEventListener("change", () => chooseModel(modelSelect.value));
  form.addEventListener("submit", predict);
  form.addEventListener("reset", () => {
    clearError();
    result.hidden = true;
  });
  loadModels();
})();
