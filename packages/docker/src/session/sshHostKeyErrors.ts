/**
 * Why Kiln refused an ssh host, as the docker CLI's `ssh` would: its key is not in known_hosts
 * (unknown), differs from the one there (changed: possibly a man-in-the-middle), or is revoked.
 * None of them ever connects; each says what to check and what to run.
 */
import { KilnError } from "@kiln/core";

export class SshHostKeyUnknownError extends KilnError {
  override readonly code: string = "KILN_SSH_HOST_KEY_UNKNOWN";
  static override isInstance(error: unknown): error is SshHostKeyUnknownError {
    return KilnError.isInstance(error) && error.code === "KILN_SSH_HOST_KEY_UNKNOWN";
  }
}

export class SshHostKeyMismatchError extends KilnError {
  override readonly code: string = "KILN_SSH_HOST_KEY_MISMATCH";
  static override isInstance(error: unknown): error is SshHostKeyMismatchError {
    return KilnError.isInstance(error) && error.code === "KILN_SSH_HOST_KEY_MISMATCH";
  }
}

export class SshHostKeyRevokedError extends KilnError {
  override readonly code: string = "KILN_SSH_HOST_KEY_REVOKED";
  static override isInstance(error: unknown): error is SshHostKeyRevokedError {
    return KilnError.isInstance(error) && error.code === "KILN_SSH_HOST_KEY_REVOKED";
  }
}
