// Times with their offset, this device's id and sequence, GeoJSON points, keys.
import { S } from "./state.js";
import { t } from "./words.js";

export function rfc3339(date = new Date()) {
  const offset = -date.getTimezoneOffset();
  const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
  const local = new Date(date.getTime() + offset * 60_000).toISOString().slice(0, 19);
  return `${local}${offset < 0 ? "-" : "+"}${pad(offset / 60)}:${pad(offset % 60)}`;
}

export function deviceId() {
  let id = localStorage.getItem("twin.device");
  if (!id) {
    id = crypto.randomUUID();
    localStorage.setItem("twin.device", id);
  }
  return id;
}

export function nextSeq() {
  const seq = Number(localStorage.getItem("twin.seq") || 0) + 1;
  localStorage.setItem("twin.seq", String(seq));
  return seq;
}

export const clock = (iso) => (iso
  ? new Date(iso).toLocaleTimeString(S.lang === "zh" ? "zh-CN" : "en-GB") : t("never"));

// GeoJSON to 7 decimals (1 cm): more is noise from the map's pixels.
export const pointAt = (latlng) => ({ type: "Point",
  coordinates: [Number(latlng.lng.toFixed(7)), Number(latlng.lat.toFixed(7))] });
