/**
 * Icons drawn as inline SVG in the text colour, so a button looks the same on every system (emoji need
 * a colour-emoji font, which many Linux desktops and kiosks lack). Each is decorative: the button that
 * holds it carries the name (aria-label).
 */
const SVG = "http://www.w3.org/2000/svg";

/** Outlines on a 24×24 grid. */
const PATHS = {
  // A handset: earpiece at the top left, mouthpiece at the bottom right.
  phone:
    "M6.6 3.2 9.4 6c.4.4.4 1 0 1.4L8 8.8a11 11 0 0 0 7.2 7.2l1.4-1.4c.4-.4 1-.4 1.4 0l2.8 2.8c.4.4.4 1 0 " +
    "1.4l-1.6 1.6c-.9.9-2.3 1.1-3.4.5A19 19 0 0 1 3.5 8.6C2.9 7.5 3.1 6.1 4 5.2L5.2 4c.4-.4 1-.4 1.4-.8z",
  // A camera body and its lens hood.
  video:
    "M3 7.5A1.5 1.5 0 0 1 4.5 6h9A1.5 1.5 0 0 1 15 7.5v9a1.5 1.5 0 0 1-1.5 1.5h-9A1.5 1.5 0 0 1 3 16.5z M16 10.5l5-3v9l-5-3z",
} as const;

export type IconName = keyof typeof PATHS;

export function icon(name: IconName): SVGSVGElement {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "20");
  svg.setAttribute("height", "20");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", PATHS[name]);
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}
