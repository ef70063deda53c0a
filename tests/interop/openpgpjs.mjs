// A small command-line face for OpenPGP.js speaking the subset of the
// Stateless OpenPGP CLI (SOP) the interop tests use with sqop, so both are
// driven the same way. Each command reads stdin and writes stdout.
//
//   generate-key "Name <addr>"                            -> armored v6 secret key
//   extract-cert < key                                    -> armored certificate
//   encrypt --sign-with KEY CERT < text                   -> signed, encrypted message
//   decrypt --verifications-out OUT --verify-with CERT KEY < message
//                                                         -> text; OUT names the good
//                                                            signature; fails unless CERT signed it
//
// encrypt follows the recipient's preferences, as a mail client does: to
// a certificate that advertises SEIPDv2 it writes AEAD (OCB), RFC 9580.
import { readFileSync, writeFileSync } from "node:fs";
import * as openpgp from "openpgp";

const stdin = () => readFileSync(0);
const text = (file) => readFileSync(file, "utf8");
const [command, ...rest] = process.argv.slice(2);

// `--name value` options, then the positional arguments.
function parse(argv) {
  const options = {};
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith("--")) {
      options[argv[i].slice(2)] = argv[++i];
    } else {
      positional.push(argv[i]);
    }
  }
  return { options, positional };
}
const { options, positional: args } = parse(rest);

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
      const signingKeys = await openpgp.readPrivateKey({ armoredKey: text(options["sign-with"]) });
      const encryptionKeys = await openpgp.readKey({ armoredKey: text(args[0]) });
      const message = await openpgp.createMessage({ binary: stdin() });
      return openpgp.encrypt({ message, encryptionKeys, signingKeys });
    }
    case "decrypt": {
      const decryptionKeys = await openpgp.readPrivateKey({ armoredKey: text(args[0]) });
      const verificationKeys = await openpgp.readKey({ armoredKey: text(options["verify-with"]) });
      const message = await openpgp.readMessage({ armoredMessage: stdin().toString() });
      const { data, signatures } = await openpgp.decrypt({
        message,
        decryptionKeys,
        verificationKeys,
        format: "binary",
        expectSigned: true,
      });
      await signatures[0].verified;
      const signer = verificationKeys.getFingerprint().toUpperCase();
      writeFileSync(options["verifications-out"], `${new Date().toISOString()} ${signer}\n`);
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
