#!/usr/bin/python3
"""h5edit: damage one object of an HDF5 file in place, for tests/damaged (python3-h5py).

  h5edit.py FILE attr OBJECT NAME VALUE [TYPE]   set attribute NAME of OBJECT ("/" the root)
                                                 to VALUE as TYPE: int64 (default for
                                                 integers), float64, string
  h5edit.py FILE set DATASET INDEX VALUE         set element INDEX (flat) of DATASET (nan, inf ok)
  h5edit.py FILE fill DATASET VALUE              set every element of DATASET
  h5edit.py FILE delete PATH                     remove a data set, a group or "OBJECT@ATTR"
  h5edit.py FILE replace DATASET SHAPE DTYPE     replace DATASET by zeros of SHAPE ("3,4"; ""
                                                 a scalar) and DTYPE (numpy name)
"""
import sys

import h5py
import numpy as np


def number(text):
    try:
        return int(text)
    except ValueError:
        return float(text)


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    path, verb, args = argv[1], argv[2], argv[3:]
    with h5py.File(path, "r+") as f:
        if verb == "attr":
            obj, name, value = args[0], args[1], args[2]
            kind = args[3] if len(args) > 3 else None
            if kind == "string":
                v = np.bytes_(value)
            elif kind == "float64" or (kind is None and not isinstance(number(value), int)):
                v = np.float64(float(value))
            else:
                v = np.int64(int(value))
            if name in f[obj].attrs:
                del f[obj].attrs[name]
            f[obj].attrs[name] = v
        elif verb == "set":
            d = f[args[0]]
            a = d[()]
            flat = a.reshape(-1)
            flat[int(args[1])] = number(args[2]) if args[2] not in ("nan", "inf", "-inf") else float(args[2])
            d[...] = flat.reshape(a.shape)
        elif verb == "fill":
            d = f[args[0]]
            v = float(args[1]) if args[1] in ("nan", "inf", "-inf") else number(args[1])
            d[...] = np.full(d.shape, v, dtype=d.dtype)
        elif verb == "delete":
            if "@" in args[0]:
                obj, attr = args[0].split("@", 1)
                del f[obj or "/"].attrs[attr]
            else:
                del f[args[0]]
        elif verb == "replace":
            shape = tuple(int(x) for x in args[1].split(",") if x)
            del f[args[0]]
            f.create_dataset(args[0], data=np.zeros(shape, dtype=args[2]))
        else:
            sys.exit(f"h5edit.py: unknown verb {verb!r}\n" + __doc__)


if __name__ == "__main__":
    main(sys.argv)
