/**
 * Who owns copied files after a `withUser` (as `COPY --chown=<user>` would make them): the oci
 * builder reads no /etc/passwd, so only numeric users are accepted — `uid` (gid = uid, Docker's
 * rule) or `uid:gid` — plus `root`/`0`. A user name before a copy is something `canBuild` refuses.
 */
export interface Owner {
  uid: number;
  gid: number;
}

const ROOT: Owner = { uid: 0, gid: 0 };

export function isRootUser(user: string | undefined): boolean {
  return user === undefined || /^(root|0)(:.*)?$/.test(user);
}

export function isNumericUser(user: string): boolean {
  return /^\d{1,10}(:\d{1,10})?$/.test(user);
}

export function ownerOf(user: string | undefined): Owner {
  if (user === undefined || isRootUser(user)) return ROOT;
  const match = /^(\d{1,10})(?::(\d{1,10}))?$/.exec(user);
  if (!match) throw new Error(`ownerOf: ${JSON.stringify(user)} is not numeric (canBuild refuses it)`);
  const uid = Number(match[1]);
  return { uid, gid: match[2] === undefined ? uid : Number(match[2]) };
}
