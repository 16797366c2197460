// The top accounts (GET /v1/top-accounts) over the merge panel's range.
import { cell } from "./tables.js";

export function drawTop(top) {
  document.querySelector("#top tbody").replaceChildren(...top.accounts.map((a) => {
    const row = document.createElement("tr");
    row.append(cell(a.account_id), cell(a.count), cell(a.sum));
    return row;
  }));
}
