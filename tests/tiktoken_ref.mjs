// tiktoken_ref.mjs — reference GPT-2 encoder for tests/test_tokenizer.c, using js-tiktoken ("gpt2").
//
//   node tests/tiktoken_ref.mjs <vendor_dir> <in.bin> <out.txt>
//
// in.bin: records of [uint32 little-endian byte length][UTF-8 bytes]. out.txt: one line per record with
// the token ids separated by spaces. "<|endoftext|>" inside a text is encoded as ordinary text, as the C
// encoder does (end-of-text ids are inserted between documents, never parsed from text).
import fs from "fs";
import path from "path";
import { pathToFileURL } from "url";

const [vendor, inPath, outPath] = process.argv.slice(2);
if (!outPath) {
    console.error("usage: node tests/tiktoken_ref.mjs <vendor_dir> <in.bin> <out.txt>");
    process.exit(2);
}
const modPath = path.resolve(vendor, "node_modules/js-tiktoken/dist/index.js");
if (!fs.existsSync(modPath)) {
    console.error(`missing ${modPath}: run scripts/setup.sh (it installs js-tiktoken@1.0.21 into data/vendor)`);
    process.exit(3);
}
const { getEncoding } = await import(pathToFileURL(modPath).href);
const enc = getEncoding("gpt2");
const decoder = new TextDecoder("utf-8", { fatal: true });

const buf = fs.readFileSync(inPath);
const lines = [];
for (let off = 0; off < buf.length;) {
    const n = buf.readUInt32LE(off);
    const text = decoder.decode(buf.subarray(off + 4, off + 4 + n));
    lines.push(enc.encode(text, [], []).join(" "));
    off += 4 + n;
}
fs.writeFileSync(outPath, lines.join("\n") + "\n");
