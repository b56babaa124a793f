"""Where each downloadable data set lives: its folder under the data root, the files whose
presence means it is there, and the official files (mirrors, md5, archive or not) to fetch.

URLs and md5s are the ones torchvision 0.28 uses for the same files, and the layouts are
torchvision's, so a data root shared with torchvision works both ways.

Fashion-MNIST can also come from the Debian package ``dataset-fashion-mnist``, whose ``.gz`` files
are compressed differently from the official downloads (other md5s) but hold the same idx files:
its content is checked by the sha256 of each decompressed file (``FASHION_SHA256``), wherever it
is read from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Remote:
    """One official file: where to get it, its md5, and whether it is an archive to unpack."""

    filename: str  # saved as <folder>/<filename>; archives are unpacked into <folder>
    md5: str
    urls: tuple[str, ...]  # mirrors, tried in order
    extract: bool = False


@dataclass(frozen=True)
class Source:
    """Where a set lives under the root and how to fetch it.

    ``folder`` is relative to the root; ``required`` lists the files (relative to ``folder``) whose
    presence means the set is there; ``gz_ok`` also accepts ``<file>.gz`` for each of them.
    """

    folder: str
    required: tuple[str, ...]
    remotes: tuple[Remote, ...]
    gz_ok: bool = False
    layout: str = ""


MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_MNIST_MD5 = (
    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "d53e105ee54ea40749a09fcbcd1e9432",
    "9fb629c4189551a2d022fa330f9573f3",
    "ec29112dd5afa0611ce80d1b7f02629c",
)
_FASHION_MD5 = (
    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "25c81989df183df01b3e8a0aad5dffbe",
    "bef4ecab320f06d8554ea6380940ec79",
    "bb300cfdad3c16e7a12a480ee83cd310",
)
# sha256 of each *decompressed* official Fashion-MNIST idx file: the same for the official .gz
# downloads and for Debian's dataset-fashion-mnist (0.0~git20200523.55506a9-1), computed from the
# latter, whose first training labels are 9 0 0 3 0 2 7 2 5 5 like the official set's.
FASHION_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
# Where Debian's dataset-fashion-mnist installs the four .gz files; the environment variable
# FASHION_DIR_ENV names another folder to look in instead (tests point it at files they write).
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_DIR_ENV = "REPROG_FASHION_MNIST_DIR"
FASHION_APT = "apt-get install dataset-fashion-mnist"
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_GTSRB_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"


SOURCES: dict[str, Source] = {
    "cifar10": Source(
        folder="",
        required=tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
        + ("cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta"),
        remotes=(
            Remote(
                "cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a",
                ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                extract=True,
            ),
        ),
        layout="cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} (python pickles)",
    ),
    "cifar100": Source(
        folder="",
        required=("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"),
        remotes=(
            Remote(
                "cifar-100-python.tar.gz",
                "eb9058c3a382ffc7106e4002c42a8d85",
                ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                extract=True,
            ),
        ),
        layout="cifar-100-python/{train, test, meta} (python pickles)",
    ),
    "svhn": Source(
        folder="",
        required=("train_32x32.mat", "test_32x32.mat"),
        remotes=(
            Remote(
                "train_32x32.mat",
                "e26dedcc434d2e4c54c9b2d4a06d8373",
                ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",),
            ),
            Remote(
                "test_32x32.mat",
                "eb5a983be6a315427106f1b164d9cef3",
                ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",),
            ),
        ),
        layout="train_32x32.mat and test_32x32.mat (cropped digits, MATLAB files)",
    ),
    "stl10": Source(
        folder="",
        required=tuple(
            f"stl10_binary/{f}"
            for f in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "class_names.txt")
        ),
        remotes=(
            Remote(
                "stl10_binary.tar.gz",
                "91f7769df0f17e558f3565bffb0c7dfb",
                ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
                extract=True,
            ),
        ),
        layout="stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin, class_names.txt}",
    ),
    "mnist-full": Source(
        folder="MNIST/raw",
        required=MNIST_FILES,
        gz_ok=True,
        remotes=tuple(
            Remote(f + ".gz", md5, tuple(m + f + ".gz" for m in _MNIST_MIRRORS))
            for f, md5 in zip(MNIST_FILES, _MNIST_MD5, strict=True)
        ),
        layout="MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (idx files)",
    ),
    "fashion-mnist": Source(
        folder="FashionMNIST/raw",
        required=MNIST_FILES,
        gz_ok=True,
        remotes=tuple(
            Remote(f + ".gz", md5, tuple(m + f + ".gz" for m in _FASHION_MIRRORS))
            for f, md5 in zip(MNIST_FILES, _FASHION_MD5, strict=True)
        ),
        layout="FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (idx files)",
    ),
    "gtsrb": Source(
        folder="gtsrb",
        required=("GTSRB/Training", "GTSRB/Final_Test/Images", "GT-final_test.csv"),
        remotes=(
            Remote(
                "GTSRB-Training_fixed.zip",
                "513f3c79a4c5141765e10e952eaa2478",
                (_GTSRB_URL + "GTSRB-Training_fixed.zip",),
                extract=True,
            ),
            Remote(
                "GTSRB_Final_Test_Images.zip",
                "c7e4e6327067d32654124b0fe9e82185",
                (_GTSRB_URL + "GTSRB_Final_Test_Images.zip",),
                extract=True,
            ),
            Remote(
                "GTSRB_Final_Test_GT.zip",
                "fe31e9c9270bbcd7b84b7f21a9d9d9e5",
                (_GTSRB_URL + "GTSRB_Final_Test_GT.zip",),
                extract=True,
            ),
        ),
        layout="gtsrb/GTSRB/Training/<00000..00042>/*.ppm, gtsrb/GTSRB/Final_Test/Images/*.ppm "
        "and gtsrb/GT-final_test.csv (torchvision's GTSRB layout)",
    ),
}


def how_to_get(name: str) -> str:
    src = SOURCES[name]
    urls = ", ".join(r.urls[0] for r in src.remotes)
    where = f"<root>/{src.layout}" if src.layout else "<root>"
    return f"{where}; official files: {urls}"
