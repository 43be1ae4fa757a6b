"""The applications on top: the `asr` command (`cli`) and its subcommands (`stream_cli`, `mic`, `evaluate`,
`adapt`), and subtitles from word times (`subtitles`)."""
