# cmake/aarch64-linux-gnu.cmake: cross-compiles offnas for 64-bit ARM Linux (aarch64) with
# Debian's gcc-aarch64-linux-gnu, against Debian's arm64 libraries unpacked into a private
# sysroot by `tests/deps --arm64` (docs/arm64.md). tests/build-arm64 uses it:
#
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#         -DOFFNAS_WITH_MPI=OFF -DOFFNAS_NATIVE=OFF
#
# The sysroot is OFFNAS_ARM64_SYSROOT (a CMake variable, else the environment variable of that
# name, else /opt/offnas-arm64-sysroot). Libraries, headers, CMake packages and pkg-config
# files come from it alone; programs run at build time (none but pkg-config) from the host.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

if(NOT OFFNAS_ARM64_SYSROOT)
  if(DEFINED ENV{OFFNAS_ARM64_SYSROOT})
    set(OFFNAS_ARM64_SYSROOT "$ENV{OFFNAS_ARM64_SYSROOT}")
  else()
    set(OFFNAS_ARM64_SYSROOT /opt/offnas-arm64-sysroot)
  endif()
endif()
if(NOT EXISTS "${OFFNAS_ARM64_SYSROOT}/usr/include/stdio.h")
  message(FATAL_ERROR "no arm64 sysroot at ${OFFNAS_ARM64_SYSROOT} (tests/deps --arm64 makes it)")
endif()
# try_compile projects read this file again: pass the sysroot on to them
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES OFFNAS_ARM64_SYSROOT)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_SYSROOT "${OFFNAS_ARM64_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH "${OFFNAS_ARM64_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config reads the sysroot's .pc files only and prefixes their paths with the sysroot
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_LIBDIR}
    "${OFFNAS_ARM64_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${OFFNAS_ARM64_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${OFFNAS_ARM64_SYSROOT}")

# FindHDF5 would ask the host's x86 h5cc (found on PATH) for its flags; an empty wrapper
# makes it search the sysroot for libhdf5 and hdf5.h instead (…/hdf5/serial).
set(HDF5_C_COMPILER_EXECUTABLE "" CACHE FILEPATH "HDF5 C wrapper: none when cross-compiling")

# ctest and add_test(... COMMAND target) run aarch64 programs through user-mode qemu
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static -L "${OFFNAS_ARM64_SYSROOT}")
