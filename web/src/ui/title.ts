/**
 * The tab's (and installed app's window's) title follows the page's state, as WhatsApp Web's does:
 * what the page is doing ("Scan the code", "Confirm on your phone", "@alice") with the unread count in
 * front, "(3) Lockstep — @alice". Pages set the state, the messenger sets the count; neither overwrites
 * the other.
 */
const APP = "Lockstep";

let state = "";
let unread = 0;

function render(): void {
  const base = state ? `${state} — ${APP}` : APP;
  const title = unread > 0 ? `(${unread}) ${base}` : base;
  // Set on every change the messenger hears (hundreds in a burst); writing the same title still costs a
  // call into the browser.
  if (document.title !== title) document.title = title;
}

/** What the page is doing, in a few words ("" for the app's name alone). */
export function setTitleState(text: string): void {
  state = text;
  render();
}

export function setTitleUnread(count: number): void {
  unread = count;
  render();
}
