// A small command-line face for OpenPGP.js, the way the interop tests use
// GnuPG, RNP and sqop: each command reads stdin and writes stdout.
//
//   node openpgpjs.mjs generate-key "Name <addr>"     -> armored v6 secret key
//   node openpgpjs.mjs extract-cert < key             -> armored certificate
//   node openpgpjs.mjs encrypt KEY CERT < text         -> signed, encrypted message
//   node openpgpjs.mjs decrypt KEY CERT < message      -> text; fails unless CERT signed it
//
// encrypt follows the recipient's preferences, as a mail client does: to
// a certificate that advertises SEIPDv2 it writes AEAD (OCB), RFC 9580.
import { readFileSync } from "node:fs";
import * as openpgp from "openpgp";

const stdin = () => readFileSync(0);
const text = (file) => readFileSync(file, "utf8");
const [command, ...args] = process.argv.slice(2);

async function main() {
  switch (command) {
    case "generate-key": {
      const { privateKey } = await openpgp.generateKey({
        type: "curve25519",
        userIDs: [parseUserId(args[0])],
        format: "armored",
        config: { v6Keys: true },
      });
      return privateKey;
    }
    case "extract-cert": {
      const key = await openpgp.readPrivateKey({ armoredKey: stdin().toString() });
      return key.toPublic().armor();
    }
    case "encrypt": {
      const signingKeys = await openpgp.readPrivateKey({ armoredKey: text(args[0]) });
      const encryptionKeys = await openpgp.readKey({ armoredKey: text(args[1]) });
      const message = await openpgp.createMessage({ binary: stdin() });
      return openpgp.encrypt({ message, encryptionKeys, signingKeys });
    }
    case "decrypt": {
      const decryptionKeys = await openpgp.readPrivateKey({ armoredKey: text(args[0]) });
      const verificationKeys = await openpgp.readKey({ armoredKey: text(args[1]) });
      const message = await openpgp.readMessage({ armoredMessage: stdin().toString() });
      const { data, signatures } = await openpgp.decrypt({
        message,
        decryptionKeys,
        verificationKeys,
        format: "binary",
        expectSigned: true,
      });
      await signatures[0].verified;
      return Buffer.from(data);
    }
    default:
      throw new Error(`unknown command ${command}`);
  }
}

function parseUserId(uid) {
  const match = /^(.*)<(.+)>$/.exec(uid);
  return match ? { name: match[1].trim(), email: match[2] } : { name: uid };
}

main().then(
  (out) => process.stdout.write(out),
  (error) => {
    process.stderr.write(`openpgpjs: ${error.message}\n`);
    process.exit(1);
  },
);
