/**
 * Debian's names for an image platform: the dpkg architecture apt resolves for, and the multiarch
 * triplet of its library directories (where the image's dynamic linker looks by default).
 */
import { normalizePlatform } from "@kiln/core/plugin";

const DPKG_ARCH: Record<string, { arch: string; triplet: string }> = {
  "linux/amd64": { arch: "amd64", triplet: "x86_64-linux-gnu" },
  "linux/arm64": { arch: "arm64", triplet: "aarch64-linux-gnu" },
  "linux/arm64/v8": { arch: "arm64", triplet: "aarch64-linux-gnu" },
  "linux/arm/v7": { arch: "armhf", triplet: "arm-linux-gnueabihf" },
  "linux/arm/v5": { arch: "armel", triplet: "arm-linux-gnueabi" },
  "linux/386": { arch: "i386", triplet: "i386-linux-gnu" },
  "linux/ppc64le": { arch: "ppc64el", triplet: "powerpc64le-linux-gnu" },
  "linux/s390x": { arch: "s390x", triplet: "s390x-linux-gnu" },
  "linux/riscv64": { arch: "riscv64", triplet: "riscv64-linux-gnu" },
  "linux/mips64le": { arch: "mips64el", triplet: "mips64el-linux-gnuabi64" },
};

export interface DebianArch {
  /** dpkg's architecture name (`dpkg --print-architecture` in the image). */
  arch: string;
  /** The multiarch triplet (`/usr/lib/<triplet>`). */
  triplet: string;
}

export function debianArchOf(platform: string): DebianArch | undefined {
  return DPKG_ARCH[platform] ?? DPKG_ARCH[normalizePlatform(platform)];
}

/**
 * Directories the image's ld.so searches with no ld.so.cache entry (glibc's system search path as
 * Debian builds it: `ld.so --help` lists them) — a library there is found without running ldconfig.
 */
export function defaultLibraryDirs(arch: DebianArch): string[] {
  return [`lib/${arch.triplet}`, `usr/lib/${arch.triplet}`, "lib", "usr/lib"];
}
