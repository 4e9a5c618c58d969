// Test-only entry (built by `vite build --mode test` into dist-test/, never into dist/): exposes the real
// browser modules to Playwright so tests/web can run them against the shared vector files.
import * as b64u from "../src/crypto/base64";
import * as bytes from "../src/crypto/bytes";
import * as cpace from "../src/crypto/cpace";
import * as ed25519 from "../src/crypto/ed25519";
import * as envelope from "../src/crypto/envelope";
import * as hpke from "../src/crypto/hpke";
import * as deviceList from "../src/link/deviceList";
import * as grant from "../src/link/grant";
import * as qr from "../src/link/qr";
import * as byCode from "../src/link/byCode";
import * as matching from "../src/link/matching";
import * as idle from "../src/link/idle";
import * as probation from "../src/link/probation";
import * as errorCodes from "../src/net/errorCodes";
import * as events from "../src/net/events";
import * as refusals from "../src/net/refusals";
import * as socket from "../src/net/socket";
import * as timesync from "../src/net/timesync";
import * as atRest from "../src/store/atRest";
import * as stateStore from "../src/store/db";
import * as messageActions from "../src/messenger/actions";
import * as messageEnvelope from "../src/messenger/envelope";
import * as fanout from "../src/messenger/fanout";
import * as chatIndex from "../src/messenger/chatIndex";
import * as messageStore from "../src/messenger/messageStore";
import * as messenger from "../src/messenger/messenger";
import * as receipts from "../src/messenger/receipts";
import * as seenIndexes from "../src/messenger/seenIndexes";
import * as timeline from "../src/messenger/timeline";

declare global {
  interface Window {
    lockstep: typeof modules;
    lockstepReady: boolean;
  }
}

const modules = {
  b64u,
  bytes,
  cpace,
  ed25519,
  envelope,
  hpke,
  deviceList,
  grant,
  qr,
  byCode,
  matching,
  idle,
  probation,
  errorCodes,
  events,
  refusals,
  socket,
  timesync,
  atRest,
  stateStore,
  messageActions,
  messageEnvelope,
  fanout,
  chatIndex,
  messageStore,
  messenger,
  receipts,
  seenIndexes,
  timeline,
};
window.lockstep = modules;
window.lockstepReady = true;
