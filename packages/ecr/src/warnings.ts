/** Things worth telling the user that are not errors (the answer is still definite). */
export interface EcrWarning {
  code: "KILN_ECR_REPOSITORY_NOT_FOUND";
  message: string;
  hint: string;
  details: Record<string, unknown>;
}

export type EcrWarningListener = (warning: EcrWarning) => void;

/** Default: a Node process warning (printed on stderr once per code+message by Node's CLI). */
export function emitProcessWarning(warning: EcrWarning): void {
  process.emitWarning(warning.message, { code: warning.code, detail: warning.hint });
}

export function deliverWarning(listener: EcrWarningListener | undefined, warning: EcrWarning): void {
  try {
    (listener ?? emitProcessWarning)(warning);
  } catch {
    // A logging callback must not change the check's answer.
  }
}
