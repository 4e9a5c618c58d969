/**
 * A group chat's member panel: who is in it, Remove (or Leave) beside each, and Add by handle.
 *
 * A group holds up to 1,024 members (messaging.md §7.3). Listing them all would put thousands of elements
 * in the page and redraw them whenever a name was learnt, and nobody scrolls through a thousand names to
 * find one: like a phone's group info, the panel lists the first MEMBER_ROWS and a search box narrows the
 * list by name or handle. What is drawn depends on the rows listed, not on the size of the group.
 */
import { el, hide, show, unkeptForm } from "../ui/dom";
import type { Conversation } from "./model";
import type { Messenger } from "./messenger";

/** Members listed at once; the rest are found by searching. */
export const MEMBER_ROWS = 50;

/** A member as the panel shows them: a name, and the handle when this device has verified the account. */
export interface Member {
  name: string;
  handle?: string;
}

export interface MemberRow {
  accountId: string;
  label: string;
}

function labelOf({ name, handle }: Member): string {
  return handle ? `${name} (@${handle})` : name;
}

/**
 * The members to list for `query` (any case: part of a name or handle; with "@", of a handle only), at
 * most `limit`, and how many more match. Whoever's handle or name is exactly the query comes first
 * (searching "@ann" finds @ann, however many @anne and @annika come before her), then the group's order.
 * Without a query only the listed members are looked at.
 */
export function listedMembers(
  members: readonly string[],
  describe: (accountId: string) => Member,
  query: string,
  limit = MEMBER_ROWS,
): { rows: MemberRow[]; more: number } {
  const handlesOnly = query.trim().startsWith("@");
  const wanted = query.trim().replace(/^@/, "").toLowerCase();
  if (!wanted) {
    const rows = members.slice(0, limit).map((accountId) => ({ accountId, label: labelOf(describe(accountId)) }));
    return { rows, more: Math.max(0, members.length - limit) };
  }
  const exact: MemberRow[] = [];
  const partial: MemberRow[] = [];
  for (const accountId of members) {
    const member = describe(accountId);
    const handle = member.handle?.toLowerCase() ?? "";
    // A handle is the account's own; a name is whatever the member chose: searching "@ann" before pressing
    // Remove must not list someone who named themself "ann" beside (or instead of) @ann.
    const fields = handlesOnly ? [handle] : [handle, member.name.toLowerCase()];
    if (fields.includes(wanted)) exact.push({ accountId, label: labelOf(member) });
    else if (fields.some((field) => field.includes(wanted))) partial.push({ accountId, label: labelOf(member) });
  }
  const rows = [...exact, ...partial].slice(0, limit);
  return { rows, more: exact.length + partial.length - rows.length };
}

export class GroupPanel {
  readonly root = el("div", { className: "group-panel", testid: "group-panel" });
  private readonly details = el("details", {});
  private readonly summary = el("summary", { text: "Members" });
  private readonly search = el("input", {
    testid: "group-member-search",
    attrs: { type: "search", placeholder: "Search members", "aria-label": "Search members", autocomplete: "off" },
  });
  private readonly list = el("ul", { className: "members" });
  private readonly more = el("p", { className: "muted small", testid: "group-members-more" });
  private readonly addHandle = el("input", {
    testid: "group-add-handle",
    attrs: { type: "text", placeholder: "@handle", "aria-label": "Add member", autocapitalize: "none" },
  });
  private readonly addForm = unkeptForm(
    { className: "inline-form" },
    this.addHandle,
    el("button", { text: "Add", testid: "group-add", attrs: { type: "submit" } }),
  );
  private groupId = "";
  private left = false;
  /** What the list shows now: a redraw that would show the same is skipped. */
  private drawn = "";

  constructor(
    private readonly messenger: () => Messenger | null,
    private readonly act: (work: (m: Messenger) => Promise<void>) => Promise<void>,
  ) {
    this.details.append(this.summary, this.search, this.list, this.more, this.addForm);
    this.root.append(this.details);
    hide(this.root);
    this.search.addEventListener("input", () => this.update());
    this.addForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const handle = this.addHandle.value.trim().replace(/^@/, "");
      const groupId = this.groupId;
      if (handle) void this.act((m) => m.addMember(groupId, handle)).then(() => (this.addHandle.value = ""));
    });
  }

  /** Shows the panel of `conversation` (hidden for a direct chat); another group starts closed, unsearched. */
  render(conversation: Conversation): void {
    const groupId = conversation.kind === "group" ? (conversation.groupId ?? "") : "";
    if (groupId !== this.groupId) {
      this.groupId = groupId;
      this.details.open = false;
      this.search.value = this.addHandle.value = "";
      this.drawn = "";
    }
    if (!groupId) {
      this.list.replaceChildren();
      hide(this.root);
      return;
    }
    this.left = conversation.left === true;
    show(this.root);
    show(this.addForm, !this.left);
    this.update();
  }

  private update(): void {
    const m = this.messenger();
    if (!m || !this.groupId) return;
    const own = m.identity.accountId;
    const members = m.groupMembers(this.groupId);
    const describe = (id: string): Member =>
      id === own ? { name: "You" } : { name: m.nameOf(id), handle: m.handleOf(id) };
    const { rows, more } = listedMembers(members, describe, this.search.value);
    const shows = [this.groupId, this.left, members.length, more, ...rows.map((r) => `${r.accountId} ${r.label}`)].join(
      "\n",
    );
    if (shows === this.drawn) return;
    this.drawn = shows;
    this.summary.textContent = `Members (${members.length})`;
    show(this.search, members.length > MEMBER_ROWS);
    this.list.replaceChildren(...rows.map((row) => this.row(row, own)));
    this.more.textContent = more ? `${more} more: search by name or handle` : "";
    show(this.more, more > 0);
  }

  private row({ accountId, label }: MemberRow, own: string): HTMLLIElement {
    const groupId = this.groupId;
    const remove = el("button", {
      className: "danger small-button",
      text: accountId === own ? "Leave" : "Remove",
      testid: "group-remove",
      attrs: { type: "button" },
    });
    remove.addEventListener("click", () => void this.act((m) => m.removeMember(groupId, accountId)));
    return el(
      "li",
      { testid: "group-member", attrs: { "data-account-id": accountId } },
      el("span", { text: label }),
      remove,
    );
  }
}
