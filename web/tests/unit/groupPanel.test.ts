import { describe, expect, test } from "vitest";
import { listedMembers, type Member, MEMBER_ROWS } from "../../src/messenger/groupPanel";

const members = Array.from({ length: 1024 }, (_, i) => `account${i}`);
const person = (id: string): Member => ({ name: `Person ${id.slice(7)}`, handle: `person${id.slice(7)}` });
const labelOf = (id: string): string => `Person ${id.slice(7)} (@person${id.slice(7)})`;

describe("the group panel's member list (1,024 members: listed in part, found by search)", () => {
  test("without a search: the first MEMBER_ROWS in the group's order, and how many more there are", () => {
    const labelled: string[] = [];
    const { rows, more } = listedMembers(members, (id) => (labelled.push(id), person(id)), "");
    expect(rows.map((r) => r.accountId)).toEqual(members.slice(0, MEMBER_ROWS));
    expect(rows[1]).toEqual({ accountId: "account1", label: "Person 1 (@person1)" });
    expect(more).toBe(1024 - MEMBER_ROWS);
    expect(labelled).toHaveLength(MEMBER_ROWS); // only what is listed is looked at
  });

  test("a search by handle or name, any case, with or without @, finds members past the first rows", () => {
    expect(listedMembers(members, person, "@PERSON1000").rows.map((r) => r.accountId)).toEqual(["account1000"]);
    expect(listedMembers(members, person, "person 777").rows.map((r) => r.accountId)).toEqual(["account777"]);
    expect(listedMembers(members, person, "nobody")).toEqual({ rows: [], more: 0 });
  });

  test("a search matching more than MEMBER_ROWS lists MEMBER_ROWS and counts the rest", () => {
    const { rows, more } = listedMembers(members, person, "@person1"); // 1, 10–19, 100–199, 1000–1023
    expect(rows).toHaveLength(MEMBER_ROWS);
    expect(rows.length + more).toBe(1 + 10 + 100 + 24);
  });

  test("the member whose handle (or name) is the search comes first, wherever they are in the group", () => {
    const shuffled = [...members].reverse(); // @person1 is near the end, after @person1000 … @person10
    expect(listedMembers(shuffled, person, "@person1").rows[0]?.accountId).toBe("account1");
    expect(listedMembers(shuffled, person, "Person 1").rows[0]?.accountId).toBe("account1");
  });

  test('a search beginning with "@" finds handles only: a member named "ann" is not listed for @ann', () => {
    const group = ["account1", "impostor", "account2", "ann"];
    const describe = (id: string): Member =>
      id === "impostor"
        ? { name: "ann", handle: "mallory" }
        : id === "ann"
          ? { name: "Ann Lee", handle: "ann" }
          : person(id);
    expect(listedMembers(group, describe, "@Ann").rows.map((r) => r.accountId)).toEqual(["ann"]);
    expect(listedMembers(group, describe, "@an").rows.map((r) => r.accountId)).toEqual(["ann"]);
    // Without "@" a name is searched too: both are listed, each labelled with their handle.
    expect(listedMembers(group, describe, "ann").rows).toEqual([
      { accountId: "impostor", label: "ann (@mallory)" },
      { accountId: "ann", label: "Ann Lee (@ann)" },
    ]);
  });

  test("a member this device has not verified shows by name alone, and is found by it", () => {
    const unknown = (id: string): Member => (id === "account5" ? { name: "Someone" } : person(id));
    expect(listedMembers(members, unknown, "").rows[5]).toEqual({ accountId: "account5", label: "Someone" });
    expect(listedMembers(members, unknown, "someone").rows.map((r) => r.accountId)).toEqual(["account5"]);
  });

  test("a small group is listed whole", () => {
    expect(listedMembers(members.slice(0, 3), person, "")).toEqual({
      rows: members.slice(0, 3).map((accountId) => ({ accountId, label: labelOf(accountId) })),
      more: 0,
    });
  });
});
