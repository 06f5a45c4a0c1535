"""The arguments of tagging a collection (`hsvlt-predict --input ... --output ...`): what `--input` is, where the rows
go, resuming or replacing an output, the decoding workers; each bad combination is refused in one line."""

from dataclasses import dataclass, field


OUTPUT_SUFFIXES = (".jsonl", ".parquet")
INPUT_TYPES = ("auto", "folder", "list", "dataset")


@dataclass
class CollectionArguments:
    """Tagging a whole collection into a file (see `transformers_hsvlt.collection`)."""

    input: str | None = field(
        default=None,
        metadata={
            "help": "Tag a collection: a folder (walked recursively), a list file (one image path per line) or a "
            "`datasets` dataset (a save_to_disk directory or Hub id). Needs --output."
        },
    )
    output: str | None = field(
        default=None, metadata={"help": "With --input: the rows file, JSON Lines (.jsonl) or Parquet (.parquet)."}
    )
    input_type: str = field(
        default="auto",
        metadata={
            "help": "What --input is (default: auto, meaning a saved dataset directory, else a folder, a file is a list file, "
            "a name that is not a local path a Hub dataset).",
            "choices": list(INPUT_TYPES),
        },
    )
    image_column: str = field(default="image", metadata={"help": "The image column of a dataset --input."})
    split: str | None = field(
        default=None, metadata={"help": "The split of a dataset --input (default: its only split)."}
    )
    streaming: bool = field(default=False, metadata={"help": "Stream a dataset --input instead of downloading it."})
    all_scores: bool = field(default=False, metadata={"help": "Write every label's score in each row."})
    resume: bool = field(default=False, metadata={"help": "Continue an interrupted --output, skipping written rows."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace an existing --output (its errors file and parts too); write --heatmaps into a non-empty "
            "directory (figures of the same names are replaced)."
        },
    )
    num_workers: int = field(default=2, metadata={"help": "DataLoader processes decoding images (default 2)."})

    def __post_init__(self):
        if self.input is None:
            return
        if self.output is None:
            raise ValueError("--input needs --output FILE.jsonl or FILE.parquet.")
        if not self.output.endswith(OUTPUT_SUFFIXES):
            raise ValueError(f"--output must end with .jsonl or .parquet, got {self.output!r}.")
        if self.resume and self.overwrite_output_dir:
            raise ValueError("--resume and --overwrite_output_dir exclude each other: continue or replace the output.")
        if self.num_workers < 0:
            raise ValueError(f"--num_workers must be at least 0, got {self.num_workers}.")
