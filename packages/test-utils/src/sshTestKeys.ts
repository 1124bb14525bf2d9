// ssh2's generateKeyPairSync("ed25519") drops a public key's leading zero byte (about 1 key in 256):
// ssh2 itself then rejects the pair as malformed, so a test using such a key fails at random.
// ssh2 is CommonJS: Node's ESM loader does not see `utils` as a named export.
import ssh2 from "ssh2";

const { utils } = ssh2;

export type TestKeyType = "ed25519" | "ecdsa" | "rsa";

/** A fresh key pair of `type` (OpenSSH `public` line, `private` PEM) that ssh2 can parse both halves of. */
export function generateTestKeyPair(type: TestKeyType): { public: string; private: string } {
  for (let attempt = 0; attempt < 20; attempt++) {
    const pair =
      type === "rsa"
        ? utils.generateKeyPairSync("rsa", { bits: 2048 })
        : type === "ecdsa"
          ? utils.generateKeyPairSync("ecdsa", { bits: 256 })
          : utils.generateKeyPairSync("ed25519");
    if (!(utils.parseKey(pair.public) instanceof Error) && !(utils.parseKey(pair.private) instanceof Error)) return pair;
  }
  throw new Error(`ssh2 generated no well-formed ${type} key pair in 20 attempts`);
}
