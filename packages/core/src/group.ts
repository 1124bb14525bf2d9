/**
 * `group("name", [images…])`: a named set of images in a spec, as a bake group — `kiln build
 * spec.ts#name` builds its images (and their bases) in one run. Members are Images or other groups
 * (flattened, each image once, in order).
 */
import { ValidationError } from "./errors.js";
import { Image } from "./image.js";

const GROUP_MARKER = Symbol.for("kiln.group");

export interface Group {
  readonly name: string;
  /** The images, nested groups flattened, each once, in declaration order. */
  readonly images: readonly Image[];
}

const GROUP_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export function group(name: string, members: ReadonlyArray<Image | Group>): Group {
  if (typeof name !== "string" || !GROUP_NAME.test(name)) {
    throw new ValidationError("group name", name, "expected letters, digits, '_', '.' or '-' (first a letter or digit)", {
      hint: 'e.g. group("services", [api, worker])',
    });
  }
  if (!Array.isArray(members) || members.length === 0) {
    throw new ValidationError(`group ${name}`, members, "expected a non-empty list of Images or groups", {
      hint: `e.g. group(${JSON.stringify(name)}, [api, worker])`,
    });
  }
  const images: Image[] = [];
  const seen = new Set<string>();
  members.forEach((member, i) => {
    const list = isGroup(member) ? member.images.map(asLocalImage) : Image.isImage(member) ? [asLocalImage(member)] : undefined;
    if (list === undefined) throw new ValidationError(`group ${name}[${i}]`, member, "expected an Image or a group");
    for (const image of list) {
      const key = JSON.stringify(image.spec);
      if (seen.has(key)) continue;
      seen.add(key);
      images.push(image);
    }
  });
  const created = { name, images: Object.freeze(images) };
  Object.defineProperty(created, GROUP_MARKER, { value: true });
  return Object.freeze(created);
}

/** True for a group from any copy of @kiln/core. */
export function isGroup(value: unknown): value is Group {
  return typeof value === "object" && value !== null && (value as { [GROUP_MARKER]?: boolean })[GROUP_MARKER] === true;
}

/** An Image from another copy of @kiln/core, re-created from its JSON. */
function asLocalImage(value: Image): Image {
  return value instanceof Image ? value : Image.fromJSON((value as { toJSON(): unknown }).toJSON());
}
