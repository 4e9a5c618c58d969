/** What the primary app tells a person about an error (the server's refusals: ../../net/refusals.ts). */
import { LinkCodeError } from "../../link/qr";
import { TooManyDevices } from "../../link/grant";
import { describeRefusal } from "../../net/refusals";
import { ServerError, SocketClosed } from "../../net/socket";
import { WrongCode } from "../../link/byCode";
import { WrongNumber } from "../../link/matching";
import { CompanionSilent } from "./codeEntry";
import { CameraError } from "./scanner";

export function describeError(error: unknown): string {
  if (error instanceof LinkCodeError || error instanceof TooManyDevices || error instanceof CameraError)
    return error.message;
  if (error instanceof WrongCode || error instanceof CompanionSilent || error instanceof WrongNumber) {
    return error.message;
  }
  if (error instanceof ServerError) return describeRefusal(error, "linking");
  if (error instanceof SocketClosed) return "The connection to the server was lost. Try again.";
  return "Something went wrong. Try again.";
}
