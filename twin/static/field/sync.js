// The outbox to POST /sync and the scope from GET /sync/scope, with backoff; what the tablet holds, loaded again.
import { LAYERS, MAX_BACKOFF_MS, S } from "./state.js";
import { TEXT, t } from "./words.js";
import { toast } from "./dom.js";
import { idbAll, idbDelete, idbGet, idbPut } from "./idb.js";
import { api } from "./api.js";
import { deviceId, rfc3339 } from "./ids.js";
import { keyOf } from "./layers.js";
import { drawSheet, render } from "./view.js";
import { uploadPhotos } from "./photos.js";
import { CASES, loadLocalCases, pullCases, settleCase } from "./cases.js";

// Strips what only the device needs.
export const wire = ({ user, key, ...edit }) => edit;

export async function settle(edit, result) {
  await idbDelete("outbox", edit.edit_id);
  S.outbox = S.outbox.filter((e) => e.edit_id !== edit.edit_id);
  // A duplicate carries the first answer: a problem or a conflict there means it never applied.
  const status = result.status === "duplicate"
    ? result.conflict != null ? "conflict" : result.problems?.length ? "rejected" : "applied"
    : result.status;
  if (edit.layer === CASES) {
    await settleCase(edit, result, status);
    return;
  }
  if (result.feature) {
    S.features.set(keyOf(edit.layer, result.feature.id), { ...result.feature, layer: edit.layer });
  }
  const later = S.outbox.filter((e) => e.key === edit.key);
  if (status === "applied" || status === "merged") {
    if (edit.op === "delete") S.features.delete(edit.key);
    // later edits of the feature were made on top of this one
    for (const next of later) {
      next.base_version = result.version;
      if (edit.op === "create") {
        next.feature_id = result.feature.id;
        next.key = keyOf(edit.layer, result.feature.id);
      }
      await idbPut("outbox", next);
    }
  } else if (status === "rejected") {
    const rejected = [{ ...edit, problems: result.problems ?? [] }];
    // later edits of a point whose creation was refused can never be sent
    if (edit.op === "create") {
      for (const next of later) {
        rejected.push({ ...next, problems: [{ field: null, value: null, reason: TEXT.createRejected[1],
          reason_zh: TEXT.createRejected[0] }] });
        await idbDelete("outbox", next.edit_id);
      }
      S.outbox = S.outbox.filter((e) => !later.includes(e));
    }
    for (const r of rejected) await idbPut("rejected", r);
    S.rejected.push(...rejected);
    toast(t("rejectedArrived", { n: rejected.length }), "error");
  }
}

// What stays on this device besides the batch, for the command centre's sync health.
export function outboxReport(batch) {
  const rest = S.outbox.filter((edit) => !batch.includes(edit));
  return { device_id: deviceId(), waiting: rest.length,
           oldest_device_time: rest[0]?.device_time ?? null, sent_at: rfc3339() };
}

export async function pushOutbox() {
  for (;;) {
    // One edit per feature a batch: the next is rebased on the version this one makes.
    const batch = [];
    const seen = new Set();
    for (const edit of S.outbox) {
      if (seen.has(edit.key)) continue;
      seen.add(edit.key);
      batch.push(edit);
    }
    const outbox = outboxReport(batch);
    if (!batch.length) {
      // once a page load, and after a batch that left edits waiting: "nothing waits here now"
      if (S.reportedWaiting !== 0) await api("/sync", { method: "POST", json: { edits: [], outbox } });
      S.reportedWaiting = 0;
      return;
    }
    await uploadPhotos(batch);
    const { results } = await (await api("/sync", { method: "POST", json: { edits: batch.map(wire), outbox } })).json();
    S.reportedWaiting = outbox.waiting;
    const byId = new Map(results.map((r) => [r.edit_id, r]));
    const answered = batch.filter((edit) => byId.has(edit.edit_id));
    if (!answered.length) throw new Error("POST /sync answered none of the edits");
    for (const edit of answered) await settle(edit, byId.get(edit.edit_id));
  }
}

export async function pullScope() {
  const since = S.cursor ? `?since=${encodeURIComponent(S.cursor)}` : "";
  const scope = await (await api(`/sync/scope${since}`)).json();
  await learnLayers(scope.layers ?? {});
  if (!since) S.features.clear();
  for (const feature of scope.features.features) S.features.set(keyOf(feature.layer, feature.id), feature);
  for (const gone of scope.deleted ?? []) S.features.delete(keyOf(gone.layer, gone.id));
  if (!since || scope.grids?.features?.length) S.grids = scope.grids;
  S.cursor = scope.cursor;
  const cached = { cursor: S.cursor, grids: S.grids, features: [...S.features.values()] };
  await idbPut("cache", cached, `scope:${S.user.name}`);
}

// A layer an admin declared or changed since this page was loaded (its spec's digest differs):
// its colours and its form are read again, before its features arrive.
async function learnLayers(layers) {
  if (!Object.keys(layers).some((name) => LAYERS[name]?.spec !== layers[name].spec)) return;
  Object.assign(LAYERS, layers);
  await loadSchemas();
}

export async function loadSchemas() {
  const names = Object.keys(LAYERS).filter((name) => LAYERS[name].group === "twin");
  const schemas = await Promise.all(names.map((name) =>
    api(`/collections/${name}/schema`).then((r) => r.json()).catch(() => null)));
  names.forEach((name, i) => { if (schemas[i]) S.schemas[name] = schemas[i]; });
  await idbPut("cache", S.schemas, "schemas");
  S.schemasLoaded = true;
}

export async function loadConflicts() {
  const before = new Set(S.conflicts.map((c) => c.id));
  const answer = await (await api("/conflicts")).json();
  // a case's conflict is shown from the sync's answer (cases.js); it has no sides to choose
  S.conflicts = answer.conflicts.filter((c) => c.status === "open" && c.layer !== CASES);
  const arrived = S.conflicts.filter((c) => !before.has(c.id)).length;
  if (arrived) toast(t("conflictsArrived", { n: arrived }), "error");
}

export const problemIds = () => [...S.conflicts.map((c) => c.id), ...S.rejected.map((e) => e.edit_id)].join();

export function sync() {
  // asked while a round runs (an edit saved meanwhile): another round follows it
  if (S.syncing) S.again = true;
  if (S.syncing || !S.token || !navigator.onLine) return S.syncing;
  S.again = false;
  clearTimeout(S.retry);
  const shown = problemIds();
  S.syncing = (async () => {
    try {
      if (!S.schemasLoaded) await loadSchemas();
      await pushOutbox();
      await pullScope();
      await pullCases();
      await loadConflicts();
      S.lastSync = new Date().toISOString();
      localStorage.setItem("twin.lastSync", S.lastSync);
      S.lastError = null;
      S.backoff = 0;
    } catch (error) {
      S.lastError = error.message;
      // retry sooner than the periodic sync, backing off while the link stays bad
      S.backoff = Math.min(MAX_BACKOFF_MS, (S.backoff || 1000) * 2);
      if (S.token) S.retry = setTimeout(sync, S.backoff);
    } finally {
      S.syncing = null;
      render();
      // redrawn only when they changed, so that half-made choices survive the periodic sync
      if (S.sheet?.kind === "problems" && problemIds() !== shown) drawSheet();
      if (S.again && !S.lastError) sync();
    }
  })();
  return S.syncing;
}



export async function loadLocal() {
  const cached = await idbGet("cache", `scope:${S.user.name}`);
  S.features = new Map((cached?.features ?? []).map((f) => [keyOf(f.layer, f.id), f]));
  S.grids = cached?.grids ?? null;
  S.cursor = cached?.cursor ?? null;
  S.schemas = (await idbGet("cache", "schemas")) ?? {};
  await loadLocalCases();
  const mine = (e) => e.user === S.user.name;
  S.outbox = (await idbAll("outbox")).filter(mine).sort((a, b) => a.device_seq - b.device_seq);
  S.rejected = (await idbAll("rejected")).filter(mine);
  S.reportedWaiting = undefined; // this user's outbox not yet reported from this page
}
