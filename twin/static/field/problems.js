// Conflicts (base, mine, server, field by field) and rejected edits, settled with a tap.
import { S } from "./state.js";
import { bi, t } from "./words.js";
import { $, h, toast } from "./dom.js";
import { idbDelete } from "./idb.js";
import { api } from "./api.js";
import { display, keyOf, titleOf } from "./layers.js";
import { closeSheet, drawSheet, drawStatus, render } from "./view.js";
import { fieldSchema, widget } from "./forms.js";
import { CASES, caseProblemCard } from "./cases.js";

export function conflictCard(conflict) {
  const schema = S.schemas[conflict.layer] ?? { properties: {} };
  const fields = Object.entries(conflict.fields);
  const chosen = {};
  const resolve = h("button", { type: "button", class: "primary", "data-choose": "values",
    disabled: true, onclick: () => resolveConflict(conflict, { values: chosen }) }, t("useChosen"));
  const refresh = () => { resolve.disabled = fields.some(([field]) => chosen[field] === undefined); };
  const rows = fields.map(([field, sides]) => {
    // one value per field: a side's, or a new one typed in
    const choose = (value, pressed) => {
      chosen[field] = value;
      for (const cell of cells) cell.setAttribute("aria-pressed", String(cell === pressed));
      refresh();
    };
    const cells = ["base", "mine", "server"].map((side) => h("button", {
      type: "button", class: "side", dataset: { side, field },
      onclick: (e) => choose(sides[side], e.currentTarget) },
    display(conflict.layer, field, sides[side])));
    const p = schema.properties[field] && fieldSchema(schema.properties[field]);
    // an emptied new value chooses nothing
    const other = p && widget(conflict.layer, field, p, null,
      (value) => choose(value ?? undefined, null), true);
    return h("div", { class: "conflict-field" },
      h("span", { class: "label" }, bi(p?.title ?? field)), ...cells,
      other && h("div", { class: "other" }, h("span", { class: "hint" }, t("other")), other));
  });
  const side = (choose, label) => h("button", { type: "button", "data-choose": choose,
    onclick: () => resolveConflict(conflict, { choose }) }, t(label));
  return h("article", { class: "conflict", dataset: { conflict: conflict.id } },
    h("h3", {}, titleOf({ layer: conflict.layer, id: conflict.feature_id,
      properties: conflict.feature?.properties ?? {} })),
    h("div", { class: "conflict-field head" },
      h("span", { class: "label" }, t("field")),
      ["base", "mine", "server"].map((name) => h("span", { class: "side-head" }, t(name)))),
    ...rows,
    h("div", { class: "actions" }, side("mine", "allMine"), side("server", "allServer"), resolve));
}

export function rejectedCard(edit) {
  if (edit.layer === CASES) return caseProblemCard(edit, () => dismiss(edit));
  const show = (field, value) => display(edit.layer, field, value);
  const reason = (p) => (S.lang === "zh" ? p.reason_zh || p.reason : p.reason);
  return h("article", { class: "rejected", dataset: { edit: edit.edit_id } },
    h("h3", {}, titleOf({ layer: edit.layer, id: edit.feature_id, local: !edit.feature_id,
      properties: {} })),
    h("ul", {}, Object.entries(edit.changes).map(([field, change]) =>
      h("li", {}, `${field}: ${show(field, change.old)} → ${show(field, change.new)}`))),
    h("ul", { class: "error" }, edit.problems.map((p) =>
      h("li", {}, `${p.field ?? ""}${p.value != null ? ` (${p.value})` : ""}: ${reason(p)}`))),
    h("button", { type: "button", onclick: () => dismiss(edit) }, t("dismiss")));
}

async function dismiss(edit) {
  if (edit.conflictId != null) {
    // a case's held move is settled by keeping the server's side; offline, it stays held
    // there (the worker has seen it) and the card goes all the same
    await api(`/conflicts/${edit.conflictId}/resolve`, { method: "POST",
      json: { choose: "server" } }).catch(() => {});
  }
  await idbDelete("rejected", edit.edit_id);
  S.rejected = S.rejected.filter((e) => e !== edit);
  drawSheet();
  drawStatus();
}

export function drawProblems() {
  const cards = [...S.conflicts.map(conflictCard)];
  const moved = S.rejected.filter((e) => e.conflict); // a case that moved on under a queued move
  const refused = S.rejected.filter((e) => !e.conflict);
  if (moved.length) cards.push(h("h2", {}, t("caseConflictsTitle")), ...moved.map(rejectedCard));
  if (refused.length) cards.push(h("h2", {}, t("rejectedTitle")), ...refused.map(rejectedCard));
  $("sheet").replaceChildren(
    h("h2", {}, t(S.conflicts.length || !S.rejected.length ? "conflictsTitle" : "problems")),
    ...(cards.length ? cards : [h("p", { class: "hint" }, t("nothing"))]),
    h("div", { class: "actions" }, h("button", { type: "button", onclick: closeSheet }, t("close"))));
}

export async function resolveConflict(conflict, choice) {
  if (!navigator.onLine) {
    toast(t("needsNetwork"), "error");
    return;
  }
  try {
    const answer = await (await api(`/conflicts/${conflict.id}/resolve`,
      { method: "POST", json: choice })).json();
    if (answer.feature) {
      S.features.set(keyOf(conflict.layer, answer.feature.id), { ...answer.feature, layer: conflict.layer });
    }
    S.conflicts = S.conflicts.filter((c) => c.id !== conflict.id);
    toast(t("resolved"));
  } catch (error) {
    toast(error.message, "error");
  }
  render();
  drawSheet();
}
