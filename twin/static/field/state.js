// The page's state and settings: the layers, limits and the one object S everything reads.
import { token, user } from "/static/common/session.js";

export const LAYERS = JSON.parse(document.getElementById("twin-layers").textContent);
export const SYNC_EVERY_MS = 30_000;
export const MAX_BACKOFF_MS = 30_000;
export const PHOTO_TYPES = ["image/jpeg", "image/png"];
export const PHOTO_MAX_BYTES = 4_000_000; // larger photos are re-encoded before they are queued
export const PHOTO_MAX_SIDE = 2048;
export const ENUM_BUTTONS_UP_TO = 6; // longer enums become a select

export const S = {
  lang: localStorage.getItem("twin.lang") || "zh",
  token: token(), // null once expired
  user: user(),
  lastSync: localStorage.getItem("twin.lastSync"),
  lastError: null,
  features: new Map(), // "layer/id" -> the server's Feature
  grids: null,
  cursor: null,
  schemas: {},
  outbox: [], // this user's queued edits, in device_seq order
  rejected: [],
  conflicts: [],
  cases: new Map(), // "cases/id" -> the server's case (GET /cases: mine and my grids', open)
  categories: [], // GET /cases/categories, cached for offline use
  categoriesLoaded: false,
  schemasLoaded: false, // fetched again once a page load, cached for offline use
  syncing: null,
  backoff: 0,
  retry: null,
  sheet: null, // what the sheet shows: {kind: "form" | "add" | "problems" | "case" | "report", ...}
};
